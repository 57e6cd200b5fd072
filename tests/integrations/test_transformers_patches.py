"""apply_llmkernels: every supported family matches its unpatched self (eval logits, training loss and
gradients, with gradient accumulation's num_items_in_batch), really runs the ops, generates the same
tokens with a cache, undoes exactly, saves what it saved before, and refuses what it does not support."""

import copy
import os

import pytest
import torch

transformers = pytest.importorskip("transformers")

import llmkernels  # noqa: E402
from llmkernels.integrations.transformers import apply_llmkernels  # noqa: E402
from tests.integrations.test_transformers_attention import _models  # noqa: E402

CAUSAL = [n for n in _models() if n != "bert"]


def _pair(name, seed=0):
    cls, config = _models()[name]
    if name == "gpt2":  # dropout would make the two runs differ by chance
        config.resid_pdrop = config.embd_pdrop = config.attn_pdrop = 0.0
    torch.manual_seed(seed)
    model = cls._from_config(config, attn_implementation="eager")
    return model, copy.deepcopy(model)


@pytest.fixture
def op_calls(monkeypatch):
    calls = {}
    for op in ("attention", "apply_rotary", "rms_norm", "swiglu", "geglu", "cross_entropy", "linear_cross_entropy", "linear"):
        real = getattr(llmkernels, op)

        def counting(*args, _real=real, _op=op, **kwargs):
            calls[_op] = calls.get(_op, 0) + 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(llmkernels, op, counting)
    return calls


@pytest.mark.parametrize("name", list(_models()))
def test_patched_model_matches_and_runs_the_ops(name, op_calls):
    model, reference = _pair(name)
    handle = apply_llmkernels(model)
    ids = torch.randint(0, 97, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    model.eval(), reference.eval()
    with torch.no_grad():
        ours, theirs = model(input_ids=ids, attention_mask=mask), reference(input_ids=ids, attention_mask=mask)
    key = "last_hidden_state" if name == "bert" else "logits"
    torch.testing.assert_close(ours[key][0], theirs[key][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[key][1, 3:], theirs[key][1, 3:], rtol=1e-5, atol=1e-5)
    assert op_calls.get("attention")
    assert bool(op_calls.get("linear")) == (name != "gpt2")  # GPT-2's projections are Conv1D
    if name in ("llama", "qwen2", "qwen3", "mistral", "gemma2"):
        assert op_calls.get("apply_rotary") and op_calls.get("rms_norm")
        assert op_calls.get("geglu" if name == "gemma2" else "swiglu")
    if name != "bert":
        assert handle.applied[-2:] == ["cross_entropy", "fused_linear_cross_entropy"]


@pytest.mark.parametrize("name", CAUSAL)
def test_training_losses_match_for_20_steps_with_gradient_accumulation(name, op_calls):
    model, reference = _pair(name, seed=1)
    apply_llmkernels(model)
    optimizers = [torch.optim.AdamW(m.parameters(), lr=1e-3) for m in (model, reference)]
    generator = torch.Generator().manual_seed(2)
    for step in range(20):
        batches = [torch.randint(0, 97, (2, 10), generator=generator) for _ in range(2)]
        labels = [b.clone() for b in batches]
        labels[0][0, :4] = -100
        items = sum(int((lab[:, 1:] != -100).sum()) for lab in labels)
        losses = []
        for m, opt in zip((model, reference), optimizers):
            total = 0.0
            for ids, lab in zip(batches, labels):  # accumulation as Trainer does it: sum / items in the whole batch
                loss = m(input_ids=ids, labels=lab, num_items_in_batch=torch.tensor(items)).loss
                loss.backward()
                total += loss.item()
            opt.step()
            opt.zero_grad()
            losses.append(total)
        assert losses[0] == pytest.approx(losses[1], rel=1e-4), (step, losses)
    assert op_calls.get("linear_cross_entropy")


@pytest.mark.parametrize("name", ["llama", "gemma2", "gpt2"])
def test_generate_with_a_cache_after_patching(name):
    model, reference = _pair(name, seed=3)
    apply_llmkernels(model)
    ids = torch.randint(1, 97, (2, 6))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    kwargs = dict(attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(model.eval().generate(ids, **kwargs), reference.eval().generate(ids, **kwargs))


def test_undo_restores_the_instance_and_save_pretrained_is_unchanged(tmp_path):
    model, _ = _pair("llama")
    before = {n: dict(m.__dict__) for n, m in model.named_modules()}
    model.save_pretrained(tmp_path / "before")
    handle = apply_llmkernels(model)
    model.save_pretrained(tmp_path / "patched")
    for file in sorted(os.listdir(tmp_path / "before")):
        assert (tmp_path / "before" / file).read_bytes() == (tmp_path / "patched" / file).read_bytes(), file
    handle.undo()
    after = {n: dict(m.__dict__) for n, m in model.named_modules()}
    assert after.keys() == before.keys()
    for name in before:
        assert after[name].keys() == before[name].keys(), name
    assert model.config._attn_implementation == "eager"


def test_two_instances_are_patched_independently():
    student, teacher = _pair("llama")
    apply_llmkernels(student)
    assert "forward" in student.model.norm.__dict__ and "forward" not in teacher.model.norm.__dict__
    assert teacher.config._attn_implementation == "eager"


def test_unsupported_models_are_refused_whole(recwarn):
    config = transformers.PhiConfig(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                                    num_attention_heads=4)
    model = transformers.PhiForCausalLM._from_config(config, attn_implementation="eager")
    with pytest.raises(ValueError, match="llama, qwen2, qwen3, mistral, gemma2, gpt2, bert"):
        apply_llmkernels(model)
    handle = apply_llmkernels(model, strict=False)
    assert handle.applied == [] and any("left unpatched" in str(w.message) for w in recwarn)
    assert model.config._attn_implementation == "eager"
    assert not any("forward" in m.__dict__ for m in model.modules())


def test_patched_model_compiles():
    model, reference = _pair("llama", seed=4)
    apply_llmkernels(model)
    compiled = torch.compile(model, backend="aot_eager")
    ids = torch.randint(0, 97, (2, 8))
    model.eval(), reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(input_ids=ids).logits, reference(input_ids=ids).logits, rtol=1e-5, atol=1e-5)


def test_a_training_step_builds_no_kv_cache(monkeypatch):
    from transformers.cache_utils import DynamicLayer

    model, reference = _pair("llama")
    apply_llmkernels(model)
    updates = []
    real = DynamicLayer.update
    monkeypatch.setattr(DynamicLayer, "update", lambda self, *a, **k: updates.append(1) or real(self, *a, **k))
    ids = torch.randint(0, 97, (2, 10))
    reference(input_ids=ids, labels=ids).loss.backward()
    assert updates  # the unpatched model fills one, config.use_cache being on
    updates.clear()
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    assert not updates and out.past_key_values is None


def test_fused_loss_runs_in_even_bounded_chunks(monkeypatch, op_calls):
    from llmkernels.integrations.transformers import patches

    assert patches._loss_chunk_rows(0, 5) == 1  # no rows: still a valid chunk_size
    for rows, vocab in [(1024, 32000), (1100, 32000), (7, 97), (600, 150000)]:
        chunk = patches._loss_chunk_rows(rows, vocab)
        chunks = max(1, -(-rows // chunk))
        assert chunk * vocab <= max(patches._LOSS_CHUNK_ELEMENTS, vocab) and chunks * chunk - rows < chunks
    assert patches._loss_chunk_rows(1024, 32000) == 512  # the Llama step: 2 chunks
    assert patches._loss_chunk_rows(8192, 131072, "cuda") == 4096  # a GPU's chunks are sized in rows
    # Several chunks on a tiny model (3 rows of logits a chunk), the loss and gradients unchanged.
    monkeypatch.setattr(patches, "_LOSS_CHUNK_ELEMENTS", 3 * 97)
    model, reference = _pair("llama", seed=4)
    apply_llmkernels(model)
    ids = torch.randint(0, 97, (2, 10))
    losses = [m(input_ids=ids, labels=ids).loss for m in (model, reference)]
    for loss in losses:
        loss.backward()
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-5)
    for (name, ours), theirs in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-4, atol=1e-5, msg=name)
    assert op_calls.get("linear_cross_entropy")
