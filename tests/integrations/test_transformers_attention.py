"""attn_implementation="llmkernels": tiny models of every supported family match "eager" (fp32), with
and without padding, and generate the same tokens; the kernel really runs (no silent fallback);
what it cannot serve exactly falls back, logged once."""

import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")

from llmkernels.integrations.transformers import attention as hf_attention  # noqa: E402

COMMON = dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64)


def _models():
    t = transformers
    return {
        "llama": (t.LlamaForCausalLM, t.LlamaConfig(**COMMON)),
        "qwen2": (t.Qwen2ForCausalLM, t.Qwen2Config(**COMMON)),
        "qwen3": (t.Qwen3ForCausalLM, t.Qwen3Config(**COMMON, head_dim=16)),
        "mistral": (t.MistralForCausalLM, t.MistralConfig(**COMMON, sliding_window=5)),
        "gemma2": (t.Gemma2ForCausalLM, t.Gemma2Config(**COMMON, head_dim=16, sliding_window=5)),
        "gpt2": (t.GPT2LMHeadModel, t.GPT2Config(vocab_size=97, n_embd=64, n_layer=2, n_head=4, n_positions=64,
                                                  scale_attn_by_inverse_layer_idx=True, bos_token_id=0, eos_token_id=0)),
        "bert": (t.BertModel, t.BertConfig(vocab_size=97, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                           intermediate_size=96)),
    }


@pytest.fixture
def no_fallback(monkeypatch):
    def refuse(reason, *args):
        raise AssertionError(f"fell back: {reason}")

    monkeypatch.setattr(hf_attention, "_fallback", refuse)


def _output(model, ids, mask):
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


@pytest.mark.parametrize("name", list(_models()))
def test_matches_eager_with_and_without_padding(name, no_fallback):
    cls, config = _models()[name]
    torch.manual_seed(0)
    model = cls._from_config(config, attn_implementation="eager").eval()
    ids = torch.randint(0, 97, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, :4] = 0  # left padding (right padding for BERT would do as well)
    eager = [_output(model, ids, None), _output(model, ids, mask)]
    model.set_attn_implementation("llmkernels")
    ours = [_output(model, ids, None), _output(model, ids, mask)]
    torch.testing.assert_close(ours[0], eager[0], rtol=1e-5, atol=1e-5)
    # Padded positions' outputs are never used (eager gives them arbitrary values); the rest must match.
    torch.testing.assert_close(ours[1][0], eager[1][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[1][1, 4:], eager[1][1, 4:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in _models() if n != "bert"])
def test_generate_with_a_cache_gives_the_same_tokens(name, no_fallback):
    cls, config = _models()[name]
    torch.manual_seed(1)
    model = cls._from_config(config, attn_implementation="eager").eval()
    ids = torch.randint(1, 97, (2, 7))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    expected = model.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False, pad_token_id=0)
    model.set_attn_implementation("llmkernels")
    got = model.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False, pad_token_id=0)
    assert torch.equal(got, expected)


def test_from_config_takes_the_name_and_training_gradients_match(no_fallback):
    cls, config = _models()["llama"]
    torch.manual_seed(2)
    ours = cls._from_config(config, attn_implementation="llmkernels")
    eager = cls._from_config(config, attn_implementation="eager")
    eager.load_state_dict(ours.state_dict())
    ids = torch.randint(0, 97, (2, 10))
    for model in (ours, eager):
        model(input_ids=ids, labels=ids).loss.backward()
    for (name, a), b in zip(ours.named_parameters(), eager.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_unservable_cases_fall_back_exactly_and_log_once(caplog):
    module = torch.nn.Module()
    module.is_causal, module.training = True, False
    q, k, v = torch.randn(1, 4, 6, 8), torch.randn(1, 2, 6, 8), torch.randn(1, 2, 6, 8)
    arbitrary = torch.rand(1, 1, 6, 6) > 0.4
    arbitrary[..., 0] = True
    sdpa = torch.nn.functional.scaled_dot_product_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1),
                                                             attn_mask=arbitrary).transpose(1, 2)
    hf_attention._logged.clear()
    with caplog.at_level("WARNING", logger="llmkernels.integrations.transformers"):
        for _ in range(2):
            out, weights = hf_attention.attention_forward(module, q, k, v, arbitrary)
            torch.testing.assert_close(out, sdpa, rtol=1e-5, atol=1e-5)
    assert weights is None
    assert len([r for r in caplog.records if "fallback" in r.getMessage()]) == 1
    # Softcapped scores with such a mask: the plain softmax (SDPA takes no softcap).
    out, _ = hf_attention.attention_forward(module, q, k, v, arbitrary, softcap=2.0, scaling=0.3)
    scores = 2.0 * torch.tanh(q @ k.repeat_interleave(2, 1).transpose(-1, -2) * 0.3 / 2.0)
    expected = torch.softmax(scores.masked_fill(~arbitrary, float("-inf")), -1) @ v.repeat_interleave(2, 1)
    torch.testing.assert_close(out, expected.transpose(1, 2), rtol=1e-5, atol=1e-5)


def test_import_llmkernels_does_not_import_transformers():
    code = "import sys, llmkernels; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
