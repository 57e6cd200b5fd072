"""rms_norm with operands of different dtypes (the autocast block: a bf16 sublayer output x onto a
float32 residual stream, y asked for in bf16): every backend against the float64 spec forward and
backward, the cast fallback of backends without mixed kernels, no cast kernels in the op, opcheck,
compile, errors."""

import pytest
import torch

import llmkernels
import llmkernels.ops.rms_norm as rms_norm_ops
from llmkernels.ops.rms_norm import reference
from tests.helpers import CastCounter, assert_close, assert_close_scaled
from tests.ops.test_rms_norm import _expected  # the float64 spec (h in float32 here: within its tolerance)

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
# (x's dtype, residual's dtype or None, out_dtype or None): the autocast block first.
COMBOS = [
    (BF16, F32, BF16), (BF16, F32, None), (F32, BF16, BF16), (F16, F32, F16), (F32, F16, None),
    (F16, BF16, None), (F16, F32, F32), (F32, None, BF16), (F32, None, F16), (BF16, None, F32), (F16, None, F32),
]


def _id(combo):
    return "-".join("none" if d is None else str(d)[6:] for d in combo)


def _uses_bf16(combo):
    return BF16 in combo


def _backends():
    return list(llmkernels.available_backends("cpu", "rms_norm"))


def _run(backend, combo, lead=(3, 5), D=77, eps=1e-6):
    x_dtype, r_dtype, out_dtype = combo
    x = torch.randn(*lead, D).to(x_dtype).requires_grad_(True)
    r = torch.randn(*lead, D).to(r_dtype).requires_grad_(True) if r_dtype is not None else None
    w = (1.0 + 0.5 * torch.randn(D)).requires_grad_(True)
    with llmkernels.use_backend(backend):
        out = llmkernels.rms_norm(x, w, eps, residual=r, out_dtype=out_dtype)
    y, h = out if r is not None else (out, None)
    grad_y = torch.randn(y.shape).to(y.dtype)
    grad_h = torch.randn(h.shape).to(h.dtype) if h is not None else None
    torch.autograd.backward([y] + ([h] if h is not None else []), [grad_y] + ([grad_h] if h is not None else []))
    return (x, r, w, eps, grad_y, grad_h), (y, h, x.grad, None if r is None else r.grad, w.grad)


def _check(inputs, outputs, combo):
    x, r, w, eps, grad_y, grad_h = inputs
    y, h, dx, dr, dw = outputs
    x_dtype, r_dtype, out_dtype = combo
    stored = reference.h_dtype(x, r)
    assert y.dtype == (out_dtype or stored) and dx.dtype == x_dtype and dw.dtype == torch.float32
    want_y, want_h, (want_dx, want_dr, want_dw) = _expected(x, r, w, eps, grad_y, grad_h)
    assert_close(y, want_y)
    assert_close(dx, want_dx)
    assert_close_scaled(dw, want_dw)
    if r is not None:
        assert h.dtype == stored and dr.dtype == r_dtype
        assert_close(h, want_h)
        assert_close(dr, want_dr)


@pytest.mark.parametrize("combo", COMBOS, ids=_id)
@pytest.mark.parametrize("backend", _backends())
def test_mixed_dtypes_forward_backward(backend, combo):
    if backend == "triton" and _uses_bf16(combo):
        pytest.skip("the Triton interpreter refuses bf16 (tested separately)")
    torch.manual_seed(hash(_id(combo)) % 1000)
    inputs, outputs = _run(backend, combo)
    _check(inputs, outputs, combo)


@pytest.mark.skipif("cpp" not in llmkernels.available_backends("cpu", "rms_norm"), reason="cpp not built")
@pytest.mark.parametrize("combo", COMBOS, ids=_id)
def test_cast_fallback_of_a_backend_without_mixed_kernels(monkeypatch, combo):
    # cuda's kernels take one dtype: the op casts around them (or runs the reference where y is
    # wider than h). cpp stands in for it here, on the same code path.
    monkeypatch.setattr(rms_norm_ops, "NATIVE_MIXED", frozenset({"reference", "triton"}))
    torch.manual_seed(7)
    inputs, outputs = _run("cpp", combo)
    _check(inputs, outputs, combo)


@pytest.mark.skipif("cpp" not in llmkernels.available_backends("cpu", "rms_norm"), reason="cpp not built")
def test_cpp_mixed_h_is_the_float32_sum_and_y_its_norm():
    # h = x + residual is one float32 rounding of exact terms (the same bits as the reference's);
    # y is the norm of that h rounded once to bf16: the same as the float32 y of it, cast.
    torch.manual_seed(3)
    x, r, w = torch.randn(9, 300, dtype=BF16), torch.randn(9, 300), torch.randn(300)
    y, h, rstd = torch.ops.llmkernels.rms_norm(x, r, w, 1e-6, "cpp", BF16)
    y32, h32, rstd32 = torch.ops.llmkernels.rms_norm(x.float(), r, w, 1e-6, "cpp")
    assert torch.equal(h, x.float() + r) and torch.equal(h, h32) and torch.equal(rstd, rstd32)
    assert torch.equal(y, y32.to(BF16))


@pytest.mark.skipif("cpp" not in llmkernels.available_backends("cpu", "rms_norm"), reason="cpp not built")
def test_cpp_autocast_block_norm_runs_no_cast_kernel():
    # bf16 x onto a float32 stream, bf16 y: one pass each way, no conversion of any operand,
    # neither around the op (what autograd would add) nor inside it (what the profiler sees).
    x = torch.randn(4, 6, 64, dtype=BF16, requires_grad=True)
    r, w = torch.randn(4, 6, 64, requires_grad=True), torch.ones(64, requires_grad=True)
    grad_y, grad_h = torch.randn(4, 6, 64, dtype=BF16), torch.randn(4, 6, 64)
    counter = CastCounter(x.numel())
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof, counter:
        with llmkernels.use_backend("cpp"):
            y, h = llmkernels.rms_norm(x, w, residual=r, out_dtype=BF16)
        torch.autograd.backward((y, h), (grad_y, grad_h))
    assert (y.dtype, h.dtype, x.grad.dtype, r.grad.dtype) == (BF16, F32, BF16, F32)
    copies = [e.key for e in prof.key_averages() if e.key in ("aten::_to_copy", "aten::copy_")]
    assert counter.casts == 0 and copies == []


@pytest.mark.parametrize("backend", [b for b in _backends() if b in ("cpp", "reference")])
def test_opcheck_mixed(backend):
    x = torch.randn(3, 5, 12, dtype=BF16, requires_grad=True)
    r, w = torch.randn(3, 5, 12, requires_grad=True), torch.randn(12, requires_grad=True)
    ops = torch.ops.llmkernels
    torch.library.opcheck(ops.rms_norm, (x, r, w, 1e-5, backend, BF16))
    torch.library.opcheck(ops.rms_norm, (r, None, None, 1e-5, backend, BF16))
    h, rstd = torch.randn(3, 5, 12), torch.rand(3, 5) + 0.5
    grad_y = torch.randn(3, 5, 12, dtype=BF16)
    torch.library.opcheck(ops.rms_norm_backward, (grad_y, torch.randn(3, 5, 12), h, w.detach(), rstd, True, backend, BF16, F32))
    torch.library.opcheck(ops.rms_norm_backward, (grad_y, None, h, None, rstd, False, backend, None, None))


def _block(x, r, w):
    y, h = llmkernels.rms_norm(x, w, 1e-5, residual=r, out_dtype=BF16)
    return (y.float() * torch.arange(y.shape[-1])).sum() + (h ** 2).sum()


def test_compile_fullgraph_mixed():
    leaves = [torch.randn(2, 7, 24, dtype=BF16, requires_grad=True), torch.randn(2, 7, 24, requires_grad=True),
              torch.randn(24, requires_grad=True)]
    loss = torch.compile(_block, fullgraph=True, backend="aot_eager")(*leaves)
    grads = torch.autograd.grad(loss, leaves)
    want = _block(*leaves)
    want_grads = torch.autograd.grad(want, leaves)
    torch.testing.assert_close(loss, want)
    for got, expected in zip(grads, want_grads):
        assert got.dtype == expected.dtype
        torch.testing.assert_close(got, expected)


def test_bad_dtype_arguments_name_the_argument():
    x = torch.randn(4, 8)
    with pytest.raises(ValueError, match="out_dtype must be None or one of"):
        llmkernels.rms_norm(x, None, out_dtype=torch.int64)
    with pytest.raises(TypeError, match="out_dtype must be None or a torch.dtype"):
        llmkernels.rms_norm(x, None, out_dtype="bfloat16")
    with pytest.raises(ValueError, match="residual must have dtype in"):
        llmkernels.rms_norm(x, None, residual=torch.ones(4, 8, dtype=torch.int64))
    rstd = torch.ones(4)
    with pytest.raises(ValueError, match="dresidual_dtype must be None or one of"):
        torch.ops.llmkernels.rms_norm_backward(x, None, x, None, rstd, False, "reference", None, torch.int32)
    with pytest.raises(ValueError, match="grad_h must have inp's dtype"):
        torch.ops.llmkernels.rms_norm_backward(x, x.to(BF16), x, None, rstd, False, "reference")


def test_triton_interpreter_refuses_a_bf16_operand():
    if "triton" not in llmkernels.available_backends("cpu", "rms_norm"):
        pytest.skip("triton not present on cpu")
    x, r = torch.randn(2, 8), torch.randn(2, 8, dtype=BF16)
    with pytest.raises(RuntimeError, match="triton"):
        torch.ops.llmkernels.rms_norm(x, r, None, 1e-6, "triton")
    with pytest.raises(RuntimeError, match="triton"):
        torch.ops.llmkernels.rms_norm(x, None, None, 1e-6, "triton", BF16)
