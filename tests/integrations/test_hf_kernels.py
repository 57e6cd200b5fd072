"""The ``kernels`` convention: ``kernelize`` with ``kernel_mapping()`` swaps tiny Llama-family models'
RMSNorm and rotary for llmkernels' (a local repository, nothing downloaded), and the kernelized model
matches its unkernelized self (logits; a training step's gradients) while really running the ops."""

import collections
import copy
import inspect
import json
import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

transformers = pytest.importorskip("transformers")
kernels = pytest.importorskip("kernels", reason="the Hugging Face `kernels` package is not installed")

from kernels import Mode, kernelize, use_kernel_forward_from_hub, use_kernel_mapping  # noqa: E402

from llmkernels.integrations import hf_kernels  # noqa: E402
from llmkernels.integrations.hf_kernels import kernel_mapping, mark_layers  # noqa: E402
from tests.integrations.test_transformers_attention import _models  # noqa: E402


class OpCalls(TorchDispatchMode):
    """Counts the llmkernels ops dispatched (forward and backward), below autograd."""

    def __init__(self):
        super().__init__()
        self.calls = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "llmkernels":
            self.calls[func.name().split("::")[1]] += 1
        return func(*args, **(kwargs or {}))


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No network: the hub's offline switch on, for whatever kernels would consult."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def marked_pair():
    """(model, reference) of one family with equal weights; model's layers marked for kernelize
    (the marks are global to the family: removed after the test)."""
    made = []

    def make(name, seed=0):
        cls, config = _models()[name]
        torch.manual_seed(seed)
        model = cls._from_config(config, attn_implementation="eager")
        reference = copy.deepcopy(model)
        made.append(mark_layers(model))
        return model, reference

    yield make
    for marks in made:
        marks.undo()


def _kernelized(model, mode, root):
    with use_kernel_mapping(kernel_mapping(root)):
        return kernelize(model, mode=mode, device="cpu")


@pytest.mark.parametrize("name", ["llama", "qwen3", "gemma2"])
@pytest.mark.parametrize("mode", [Mode.INFERENCE, Mode.TRAINING], ids=["inference", "training"])
def test_kernelized_logits_match_and_run_the_ops(name, mode, marked_pair, tmp_path):
    model, reference = marked_pair(name)
    ids = torch.randint(0, 97, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    with torch.no_grad():
        expected = reference.eval()(input_ids=ids, attention_mask=mask).logits
        _kernelized(model.eval(), mode, tmp_path)
        with OpCalls() as ops:
            logits = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(logits[0], expected[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits[1, 3:], expected[1, 3:], rtol=1e-5, atol=1e-5)
    layers = model.config.num_hidden_layers
    assert ops.calls["apply_rotary"] == layers
    if name == "gemma2":  # transformers does not mark Gemma2's (1 + weight) RMSNorm
        assert ops.calls["rms_norm"] == 0
    else:  # two a block and the final one (Qwen3: and q_norm, k_norm per block)
        assert ops.calls["rms_norm"] == 2 * layers + 1 + (2 * layers if name == "qwen3" else 0)


def test_kernelized_training_step_gradients_match(marked_pair, tmp_path):
    model, reference = marked_pair("llama", seed=1)
    _kernelized(model.train(), Mode.TRAINING, tmp_path)
    ids = torch.randint(0, 97, (2, 10))
    reference.train()(input_ids=ids, labels=ids).loss.backward()
    with OpCalls() as ops:
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
    assert ops.calls["rms_norm_backward"] == 5 and ops.calls["apply_rotary_backward"] == 2
    for (name, ours), theirs in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-5, atol=1e-5, msg=name)


def test_marks_undo_and_refuse_other_models(marked_pair):
    from transformers.models.llama import modeling_llama

    model, _ = marked_pair("llama")
    marks = mark_layers(model)  # a second call marks nothing new
    assert marks.applied == []
    bert_cls, bert_config = _models()["bert"]
    with pytest.raises(ValueError, match="config.model_type in llama, qwen2, qwen3, mistral, gemma2; got 'bert'"):
        mark_layers(bert_cls._from_config(bert_config))
    assert not inspect.isfunction(modeling_llama.apply_rotary_pos_emb)


def test_undo_leaves_transformers_as_it_was():
    from transformers.models.llama import modeling_llama

    cls, config = _models()["llama"]
    function = modeling_llama.apply_rotary_pos_emb
    had = "kernel_layer_name" in vars(modeling_llama.LlamaRMSNorm)  # True where transformers marked it itself
    marks = mark_layers(cls._from_config(config))
    assert modeling_llama.LlamaRMSNorm.kernel_layer_name == "RMSNorm"
    assert marks.applied == ([] if had else ["transformers.models.llama.modeling_llama.apply_rotary_pos_emb: rotary_pos_emb",
                                             "LlamaRMSNorm: RMSNorm"])
    marks.undo()
    assert modeling_llama.apply_rotary_pos_emb is function
    assert ("kernel_layer_name" in vars(modeling_llama.LlamaRMSNorm)) == had


@pytest.mark.parametrize("layer,act", [("SiluAndMul", torch.nn.functional.silu),
                                       ("GeluTanhAndMul", lambda g: torch.nn.functional.gelu(g, approximate="tanh"))])
def test_gated_activation_layers(layer, act, tmp_path):
    @use_kernel_forward_from_hub(layer)
    class GatedAct(torch.nn.Module):  # the convention: x = [gate | up]
        def forward(self, x):
            gate, up = x.chunk(2, dim=-1)
            return act(gate) * up

    module = torch.nn.Sequential(GatedAct())
    x = torch.randn(3, 5, 16, requires_grad=True)
    expected = module(x)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), x)
    with use_kernel_mapping(kernel_mapping(tmp_path)):
        kernelize(module, mode=Mode.TRAINING, device="cpu")
    with OpCalls() as ops:
        out = module(x)
        (grad,) = torch.autograd.grad(out.square().sum(), x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-5)
    op = "swiglu" if layer == "SiluAndMul" else "geglu"
    assert ops.calls[op] == 1 and ops.calls[op + "_backward"] == 1


def test_rotary_layer_takes_both_layouts():
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    q, k = torch.randn(2, 4, 6, 8), torch.randn(2, 2, 6, 8)
    angles = torch.randn(2, 6, 4)
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    layer = hf_kernels.layers.ApplyRotary()
    for dim, (qq, kk) in ((1, (q, k)), (2, (q.transpose(1, 2), k.transpose(1, 2)))):
        for ours, theirs in zip(layer(qq, kk, cos, sin, dim), apply_rotary_pos_emb(qq, kk, cos, sin, dim)):
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unsqueeze_dim must be 1 .* or 2"):
        layer(q, k, cos, sin, 3)


def test_local_repository_layout_and_mapping(tmp_path):
    repo = hf_kernels.local_repository(tmp_path)
    assert hf_kernels.local_repository(tmp_path) == repo  # idempotent
    for backend in ("cpu", "cuda"):
        metadata = json.loads((repo / "build" / f"torch-{backend}" / "metadata.json").read_text())
        assert metadata["backend"] == {"type": backend}
    module = kernels.get_local_kernel(repo)
    assert module.layers is sys.modules["llmkernels.integrations.hf_kernels.layers"]
    mapping = kernel_mapping(tmp_path, devices="cpu")
    assert set(mapping) == set(hf_kernels.LAYERS) and all(set(v) == {"cpu"} for v in mapping.values())
    with pytest.raises(ValueError, match="devices must be a non-empty subset of"):
        kernel_mapping(tmp_path, devices=("tpu",))
    with pytest.raises(TypeError, match="root must be a path"):
        hf_kernels.local_repository(3)


def test_without_kernels_the_import_names_the_extra(monkeypatch):
    from llmkernels.extras import MissingExtra

    monkeypatch.setitem(sys.modules, "kernels", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "llmkernels.integrations.hf_kernels")
    with pytest.raises(MissingExtra, match=r"needs kernels, which is not installed: pip install 'llmkernels\[transformers\]'"):
        import llmkernels.integrations.hf_kernels  # noqa: F401
