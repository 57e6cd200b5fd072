"""Every cpp family at every CPU ISA level this machine runs (generic, AVX2, AVX-512, AVX512-BF16),
forward and backward, against the float64 reference: the per-ISA test of the positional ops
(test_cpu_isa_variants.py) extended to attention, cross-entropy and distillation, whose lower
levels otherwise never run on a machine with AVX512-BF16. Small shapes (CI time), with row lengths
that are no multiple of any vector width."""

import pytest
import torch

import llmkernels
from tests.helpers import assert_close, assert_close_scaled
from tests.ops.test_cpu_isa_variants import C, LEVELS, forced_isa  # noqa: F401 (forced_isa: the fixture)

pytestmark = pytest.mark.skipif(C is None, reason="llmkernels._C is not built")


def _forward_backward(backend, fn, inputs, differentiable):
    leaves = [t.detach().clone().requires_grad_(i in differentiable) for i, t in enumerate(inputs)]
    with llmkernels.use_backend(backend):
        out = fn(*leaves)
        upstream = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
        grads = torch.autograd.grad(out, [leaves[i] for i in differentiable], upstream)
    return out, grads


def _check_family(fn, inputs, differentiable, dtype):
    assert "cpp" in llmkernels.available_backends("cpu")
    out, grads = _forward_backward("cpp", fn, inputs, differentiable)
    wide = [t.double() if t.is_floating_point() else t for t in inputs]
    expected, expected_grads = _forward_backward("reference", fn, wide, differentiable)
    assert_close(out, expected, dtype)
    for got, want in zip(grads, expected_grads):
        assert_close_scaled(got, want, dtype)


DTYPES = [torch.float32, torch.bfloat16]


@pytest.mark.parametrize("forced_isa", LEVELS, indirect=True)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
def test_attention_every_isa(forced_isa, dtype, causal):
    assert C.cpu_isa() == forced_isa
    q = torch.randn(1, 4, 37, 40).to(dtype)
    k, v = torch.randn(1, 2, 45, 40).to(dtype), torch.randn(1, 2, 45, 40).to(dtype)
    _check_family(lambda a, b, c: llmkernels.attention(a, b, c, causal=causal, softcap=20.0), [q, k, v], (0, 1, 2), dtype)


@pytest.mark.parametrize("forced_isa", LEVELS, indirect=True)
@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_plain_scores_every_isa(forced_isa, dtype):
    """No softcap or ALiBi: the kernel keeps raw q.k and folds the scale into 2^t's argument, and
    head_dim 64 takes the 16 x 16 block transposes; 80 causal rows split the first block's diagonal
    tile in halves, with a tail block of 16 queries."""
    assert C.cpu_isa() == forced_isa
    q = torch.randn(1, 4, 80, 64).to(dtype)
    k, v = torch.randn(1, 2, 80, 64).to(dtype), torch.randn(1, 2, 80, 64).to(dtype)
    _check_family(lambda a, b, c: llmkernels.attention(a, b, c, causal=True), [q, k, v], (0, 1, 2), dtype)


@pytest.mark.parametrize("forced_isa", LEVELS, indirect=True)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_every_isa(forced_isa, dtype):
    logits = (torch.randn(23, 301) * 3).to(dtype)
    target = torch.randint(0, 301, (23,))
    target[::4] = -100
    fn = lambda x: llmkernels.cross_entropy(x, target, label_smoothing=0.1, z_loss=1e-3, softcap=15.0)  # noqa: E731
    _check_family(fn, [logits], (0,), dtype)


@pytest.mark.parametrize("forced_isa", LEVELS, indirect=True)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta", [0.0, 0.4, 1.0])
def test_distillation_every_isa(forced_isa, dtype, beta):
    student, teacher = (torch.randn(13, 203) * 2).to(dtype), (torch.randn(13, 203) * 2).to(dtype)
    target = torch.randint(0, 203, (13,))
    fn = lambda s: llmkernels.distillation_loss(s, teacher, target, beta=beta, temperature=1.7, hard_weight=0.3)  # noqa: E731
    _check_family(fn, [student], (0,), dtype)


@pytest.mark.parametrize("forced_isa", LEVELS, indirect=True)
@pytest.mark.parametrize("dtype", DTYPES)
def test_topk_distillation_every_isa(forced_isa, dtype):
    student = (torch.randn(11, 203) * 2).to(dtype)
    ids, logprobs = llmkernels.topk_logprobs(torch.randn(11, 203), 9)
    target = torch.randint(0, 203, (11,))
    fn = lambda s: llmkernels.topk_distillation_loss(s, ids, logprobs, target, hard_weight=0.2)  # noqa: E731
    _check_family(fn, [student], (0,), dtype)


@pytest.mark.parametrize("forced_isa", LEVELS, indirect=True)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("softcap", [None, 6.0])
def test_topk_logprobs_every_isa(forced_isa, dtype, softcap):
    logits = (torch.randn(9, 211) * 2).to(dtype)
    with llmkernels.use_backend("cpp"):
        ids, logprobs = llmkernels.topk_logprobs(logits, 70, temperature=1.3, softcap=softcap)
    with llmkernels.use_backend("reference"):
        expected_ids, expected = llmkernels.topk_logprobs(logits.double(), 70, temperature=1.3, softcap=softcap)
    assert torch.equal(logits.gather(-1, ids.long()), logits.gather(-1, expected_ids.long()))
    assert_close(logprobs, expected, torch.float32)
