"""RMSNorm (with the fused residual add): the reference against a float64 naive spec, every
present backend against it forward and backward, layouts, determinism, errors, opcheck, compile."""

import pytest
import torch

import llmkernels
from llmkernels.ops.rms_norm import reference
from tests.helpers import assert_close, assert_close_scaled, assert_compiled_matches_eager, backend_cases, skip_unless_present

# (leading shape, D): D of 1, 7, 1000 and 4096 (odd sizes, a partial vector, several blocks), and
# 4100: past the Triton launcher's largest block, so its rows are swept in two column blocks.
SHAPES = [((3,), 1), ((2, 5), 7), ((4, 3), 1000), ((3,), 4096), ((1, 1), 33), ((2,), 4100)]


def _naive(x, residual, weight, eps):
    """The formula written out in float64, differentiable: (y, h)."""
    h = x.double() if residual is None else x.double() + residual.double()
    y = h / torch.sqrt((h * h).sum(-1, keepdim=True) / h.shape[-1] + eps)
    return (y if weight is None else y * weight.double()), h


def _leaf(*shape, dtype=torch.float32, device="cpu"):
    return torch.randn(*shape, dtype=dtype, device=device).requires_grad_(True)


def _expected(x, residual, weight, eps, grad_y, grad_h):
    """Naive outputs and gradients (dx, dresidual, dweight) in float64."""
    leaves = [t.detach().double().requires_grad_(True) if t is not None else None for t in (x, residual, weight)]
    y, h = _naive(*leaves, eps)
    outs, grads = [y], [grad_y.double()]
    if residual is not None:
        outs.append(h)
        grads.append(grad_h.double())
    torch.autograd.backward(outs, grads)
    return y.detach(), h.detach(), [t.grad if t is not None else None for t in leaves]


def _check_case(backend, device, dtype, lead, D, with_residual, with_weight, make=None, eps=1e-6):
    make = make or (lambda: _leaf(*lead, D, dtype=dtype, device=device))
    x = make()
    residual = make() if with_residual else None
    weight = (1.0 + 0.5 * torch.randn(D, device=device)).to(dtype).requires_grad_(True) if with_weight else None
    with llmkernels.use_backend(backend):
        out = llmkernels.rms_norm(x, weight, eps, residual=residual)
    y, h = out if with_residual else (out, None)
    assert y.dtype == dtype and y.shape == x.shape
    grad_y = torch.randn_like(y)
    grad_h = torch.randn_like(h) if with_residual else None
    want_y, want_h, (want_dx, want_dr, want_dw) = _expected(x, residual, weight, eps, grad_y, grad_h)
    assert_close(y, want_y, dtype)
    if with_residual:
        assert h.dtype == dtype
        assert_close(h, want_h, dtype)
        torch.autograd.backward((y, h), (grad_y, grad_h))  # outside the block: the same backend
        assert_close(residual.grad, want_dr, dtype)
    else:
        y.backward(grad_y)
    assert_close(x.grad, want_dx, dtype)
    if with_weight:
        assert weight.grad.dtype == weight.dtype
        assert_close_scaled(weight.grad, want_dw, dtype)


def test_reference_matches_naive_spec_float64():
    for lead, D in SHAPES:
        for with_residual in (False, True):
            _check_case("reference", "cpu", torch.float64, lead, D, with_residual, True, eps=1e-5)


def test_reference_gradcheck_float64():
    x, r, w = _leaf(3, 6, dtype=torch.float64), _leaf(3, 6, dtype=torch.float64), _leaf(6, dtype=torch.float64)
    with llmkernels.use_backend("reference"):
        assert torch.autograd.gradcheck(lambda a, b, c: llmkernels.rms_norm(a, c, 1e-3, residual=b), (x, r, w))
        assert torch.autograd.gradcheck(lambda a: llmkernels.rms_norm(a, None, 1e-3), (x,))


@pytest.mark.parametrize("device,backend,dtype", backend_cases("rms_norm"))
@pytest.mark.parametrize("with_residual,with_weight", [(True, True), (False, True), (True, False), (False, False)])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(str(v) for v in (*s[0], s[1])))
def test_backend_forward_backward(device, backend, dtype, with_residual, with_weight, shape):
    skip_unless_present("rms_norm", device, backend, dtype)
    _check_case(backend, device, dtype, shape[0], shape[1], with_residual, with_weight)


def _layouts(D, dtype, device):
    """Inputs whose rows are not contiguous: a column slice, a transpose, a strided last dim."""
    return {
        "sliced rows": lambda: torch.randn(2, 9, 2 * D, dtype=dtype, device=device)[..., :D].requires_grad_(True),
        "transposed": lambda: torch.randn(9, 2, D, dtype=dtype, device=device).transpose(0, 1).requires_grad_(True),
        "strided last dim": lambda: torch.randn(D, 6, dtype=dtype, device=device).t().requires_grad_(True),
    }


@pytest.mark.parametrize("device,backend,dtype", backend_cases("rms_norm", dtypes=(torch.float32, torch.float16)))
@pytest.mark.parametrize("layout", ["sliced rows", "transposed", "strided last dim"])
def test_non_contiguous_inputs(device, backend, dtype, layout):
    skip_unless_present("rms_norm", device, backend, dtype)
    make = _layouts(37, dtype, device)[layout]
    for with_residual in (False, True):
        _check_case(backend, device, dtype, None, 37, with_residual, True, make=make)


def test_empty_inputs():
    for backend in llmkernels.available_backends("cpu", "rms_norm"):
        x, r, w = _leaf(0, 7), _leaf(0, 7), _leaf(7)
        with llmkernels.use_backend(backend):
            y, h = llmkernels.rms_norm(x, w, residual=r)
            assert y.shape == (0, 7) and h.shape == (0, 7)
            (y.sum() + h.sum()).backward()
            assert x.grad.shape == (0, 7) and torch.equal(w.grad, torch.zeros(7))
            assert llmkernels.rms_norm(torch.randn(2, 0, 5), None).shape == (2, 0, 5)


def test_only_h_reaches_the_loss():
    x, r, w = _leaf(4, 9), _leaf(4, 9), _leaf(9)
    for backend in llmkernels.available_backends("cpu", "rms_norm"):
        _, h = llmkernels.rms_norm(x, w, residual=r)
        dx, dr = torch.autograd.grad(h.sum() * 3.0, (x, r))
        torch.testing.assert_close(dx, torch.full_like(x, 3.0))
        torch.testing.assert_close(dr, torch.full_like(r, 3.0))


def test_weight_keeps_its_dtype_beside_low_precision_x():
    for backend in llmkernels.available_backends("cpu", "rms_norm"):
        if backend == "triton":
            continue  # the interpreter's bf16 refusal is tested by the backends tests
        x, w = _leaf(5, 24, dtype=torch.bfloat16), _leaf(24)
        with llmkernels.use_backend(backend):
            y = llmkernels.rms_norm(x, w)
        y.backward(torch.ones_like(y))
        assert y.dtype == torch.bfloat16 and w.grad.dtype == torch.float32
        want_y, _, (_, _, want_dw) = _expected(x, None, w, 1e-6, torch.ones_like(y), None)
        assert_close(y, want_y, torch.bfloat16)
        assert_close_scaled(w.grad, want_dw, torch.bfloat16)


def _cpp_run(x, r, w, grad_y, grad_h):
    """One cpp forward and backward with the residual: [y, h, dx, dresidual, dweight]."""
    leaves = [t.clone().requires_grad_(True) for t in (x, r, w)]
    with llmkernels.use_backend("cpp"):
        y, h = llmkernels.rms_norm(leaves[0], leaves[2], residual=leaves[1])
    torch.autograd.backward((y, h), (grad_y, grad_h))
    return [y.detach(), h.detach()] + [t.grad for t in leaves]


@pytest.mark.skipif("cpp" not in llmkernels.available_backends("cpu", "rms_norm"), reason="cpp not built")
def test_cpp_gradients_bitwise_identical_across_thread_counts():
    x, r, w = torch.randn(1031, 200), torch.randn(1031, 200), torch.randn(200)
    grad_y, grad_h = torch.randn(1031, 200), torch.randn(1031, 200)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 1):
            torch.set_num_threads(n)
            results.append(_cpp_run(x, r, w, grad_y, grad_h))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(residual=torch.randn(4, 9)), "residual must have x's shape"),
        (dict(residual=torch.ones(4, 8, dtype=torch.int64)), "residual must have dtype in"),
        (dict(out_dtype=torch.int32), "out_dtype must be None or one of"),
        (dict(weight=torch.randn(9)), r"weight must have shape \(8,\)"),
        (dict(weight=torch.randn(2, 8)), "weight must have 1 dimensions"),
        (dict(eps=0.0), "eps must be a finite number > 0"),
        (dict(eps=-1e-6), "eps must be a finite number > 0"),
        (dict(eps=float("inf")), "eps must be a finite number > 0"),
        (dict(eps=float("nan")), "eps must be a finite number > 0"),
        (dict(x=torch.ones(4, 8, dtype=torch.int64)), "x must have dtype"),
        (dict(x=torch.randn(4, 0)), "x must have a last dimension of at least 1"),
        (dict(x=torch.tensor(1.0)), "x must have at least one dimension"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs, match):
    args = dict(x=torch.randn(4, 8), weight=torch.randn(8), eps=1e-6)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        llmkernels.rms_norm(args.pop("x"), args.pop("weight"), args.pop("eps"), **args)
    with pytest.raises(TypeError, match="eps must be a number"):
        llmkernels.rms_norm(torch.randn(2, 3), None, "1e-6")


CPU_BACKENDS = [b for b in ("reference", "cpp") if b in llmkernels.available_backends("cpu", "rms_norm")]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_opcheck(backend):
    x, r, w = _leaf(3, 5, 12), _leaf(3, 5, 12), _leaf(12)
    ops = torch.ops.llmkernels
    torch.library.opcheck(ops.rms_norm, (x, r, w, 1e-5, backend))
    torch.library.opcheck(ops.rms_norm, (x, None, None, 1e-5, backend))
    rstd = torch.rand(3, 5) + 0.5
    grad = torch.randn(3, 5, 12)
    torch.library.opcheck(ops.rms_norm_backward, (grad, grad.clone(), x.detach(), w.detach(), rstd, True, backend))
    torch.library.opcheck(ops.rms_norm_backward, (grad, None, x.detach(), None, rstd, False, backend))


@pytest.mark.parametrize("compiler", ["aot_eager", "inductor"])
def test_compile_fullgraph(compiler):
    leaves = [_leaf(2, 7, 24), _leaf(2, 7, 24), _leaf(24)]
    assert_compiled_matches_eager(lambda x, r, w: llmkernels.rms_norm(x * 2.0, w, 1e-5, residual=r), leaves, compiler)


def test_reference_h_is_stored_in_x_dtype_before_the_norm():
    # y normalises the h the op returns (rounded to bf16), as the unfused h = x + r; rms_norm(h).
    x, r = torch.randn(3, 40, dtype=torch.bfloat16), torch.randn(3, 40, dtype=torch.bfloat16)
    y, h, _ = reference.forward(x, r, None, 1e-6)
    torch.testing.assert_close(h, x + r)
    torch.testing.assert_close(y, reference.forward(h, None, None, 1e-6)[0], rtol=0, atol=0)


@pytest.mark.skipif("cpp" not in llmkernels.available_backends("cpu", "rms_norm"), reason="cpp not built")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cpp_every_isa_level_gives_the_same_bits(dtype):
    from llmkernels import _native

    C = _native.extension()
    x, r, w = torch.randn(37, 301, dtype=dtype), torch.randn(37, 301, dtype=dtype), torch.randn(301)
    grad_y, grad_h = torch.randn(37, 301, dtype=dtype), torch.randn(37, 301, dtype=dtype)
    previous, results = C.cpu_isa(), []
    try:
        for level in C.build_info()["cpu_isa_supported"]:
            C.set_cpu_isa(level)
            results.append(_cpp_run(x, r, w, grad_y, grad_h))
    finally:
        C.set_cpu_isa(previous)
    want_y, _, (want_dx, _, want_dw) = _expected(x, r, w, 1e-6, grad_y, grad_h)
    assert_close(results[0][0], want_y, dtype)
    assert_close(results[0][2], want_dx, dtype)
    assert_close_scaled(results[0][4], want_dw, dtype)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@pytest.mark.parametrize("backend", [b for b in llmkernels.available_backends("cpu", "rms_norm") if b != "reference"])
def test_broadcast_gradients_of_a_sum(backend):
    # y.sum() + h.sum() hands the backward stride-0 gradients: read as one broadcast row.
    x, r, w = _leaf(3, 5, 40), _leaf(3, 5, 40), _leaf(40)
    with llmkernels.use_backend(backend):
        y, h = llmkernels.rms_norm(x, w, residual=r)
    (y.sum() + 2.0 * h.sum()).backward()
    _, _, (want_dx, want_dr, want_dw) = _expected(x, r, w, 1e-6, torch.ones(3, 5, 40), torch.full((3, 5, 40), 2.0))
    assert_close(x.grad, want_dx)
    assert_close(r.grad, want_dr)
    assert_close_scaled(w.grad, want_dw)


@pytest.mark.skipif("cpp" not in llmkernels.available_backends("cpu", "rms_norm"), reason="cpp not built")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpp_streamed_outputs_past_the_cache(dtype):
    # Outputs of 32 MB and more are written with non-temporal stores: the same answers.
    rows = (32 << 20) // (4 * 1024) * (2 if dtype == torch.bfloat16 else 1) + 3
    x, r, w = torch.randn(rows, 1024, dtype=dtype), torch.randn(rows, 1024, dtype=dtype), torch.randn(1024)
    grad_y, grad_h = torch.randn(rows, 1024, dtype=dtype), torch.randn(rows, 1024, dtype=dtype)
    outputs = []
    for backend in ("cpp", "reference"):
        with llmkernels.use_backend(backend):
            y, h, rstd = torch.ops.llmkernels.rms_norm(x, r, w, 1e-6, backend)
            dx, _, dw = torch.ops.llmkernels.rms_norm_backward(grad_y, grad_h, h, w, rstd, True, backend)
        outputs.append((y, h, dx, dw))
    for got, want in zip(outputs[0][:3], outputs[1][:3]):
        assert_close(got, want, dtype)
    assert_close_scaled(outputs[0][3], outputs[1][3], dtype)


@pytest.mark.skipif("triton" not in llmkernels.available_backends("cpu", "rms_norm"), reason="no Triton interpreter here")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_triton_one_block_rows_give_the_sweeps_bits(dtype, monkeypatch):
    """The ONE_BLOCK layout (off by default until a GPU times it): a row that fits one block is
    normalised from registers and its weight-gradient partial kept in registers, the same
    arithmetic in the same order as the column sweeps, so the same bits.
    37 rows: blocks of 16 rows, the last one short."""
    from llmkernels.ops.rms_norm import triton_kernels

    x, residual = torch.randn(37, 1000, dtype=dtype), torch.randn(37, 1000, dtype=dtype)
    weight = torch.randn(1000)
    grad_y, grad_h = torch.randn(37, 1000, dtype=dtype), torch.randn(37, 1000, dtype=dtype)

    def run():
        leaves = [t.clone().requires_grad_(True) for t in (x, residual, weight)]
        with llmkernels.use_backend("triton"):
            y, h = llmkernels.rms_norm(leaves[0], leaves[2], 1e-6, residual=leaves[1])
        return (y, h, *torch.autograd.grad((y, h), leaves, (grad_y, grad_h)))

    monkeypatch.setattr(triton_kernels, "ONE_BLOCK_ROWS", True)
    one_block = run()
    monkeypatch.setattr(triton_kernels, "ONE_BLOCK_ROWS", False)
    sweeps = run()
    for got, want in zip(one_block, sweeps):
        assert torch.equal(got, want)
