"""linear: the reference against the float64 product, every backend against it forward and backward
(odd sizes, strided inputs, bias or none, frozen operands), opcheck, compile, autocast, errors."""

import pytest
import torch
import torch.nn.functional as F

import llmkernels
from llmkernels.ops.common import cpu_gemm
from tests.helpers import assert_close_scaled, assert_compiled_matches_eager, backend_cases, skip_unless_present

# (leading shape of x, in_features, out_features): tiny, odd, and products past the threshold at
# which the cpp backend's own GEMM takes over (cpu_gemm.MIN_MULTIPLY_ADDS), ragged against its tiles.
SHAPES = [((1,), 1, 1), ((3, 5), 7, 9), ((2, 67), 130, 203), ((515,), 384, 257)]


def _leaves(lead, k, n, dtype, bias):
    x = torch.randn(*lead, k, dtype=dtype, requires_grad=True)
    weight = (torch.randn(n, k, dtype=dtype) / k**0.5).requires_grad_(True)
    b = torch.randn(n, dtype=dtype, requires_grad=True) if bias else None
    return x, weight, b


def _check_against_float64(x, weight, b, dtype):
    """Forward and backward of llmkernels.linear (current backend) against F.linear in float64."""
    out = llmkernels.linear(x, weight, b)
    assert out.dtype == dtype and out.shape == (*x.shape[:-1], weight.shape[0])
    leaves = [t for t in (x, weight, b) if t is not None]
    exact = [t.detach().double().requires_grad_(True) for t in leaves]
    expected = F.linear(exact[0], exact[1], exact[2] if b is not None else None)
    # Each element sums in_features products of unit-scale terms: rounding is relative to them.
    assert_close_scaled(out, expected, dtype, terms=x.shape[-1] ** 0.5)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, leaves, grad)
    want = torch.autograd.grad(expected, exact, grad.double())
    rows = max(1, out.numel() // max(1, out.shape[-1]))
    for g, w in zip(got, want):
        assert g.dtype == dtype
        assert_close_scaled(g, w, dtype, terms=max(rows, weight.shape[0]) ** 0.5)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reference_is_the_product(bias, dtype):
    with llmkernels.use_backend("reference"):
        _check_against_float64(*_leaves((4, 3), 37, 21, dtype, bias), dtype)


def test_reference_gradcheck_float64():
    x, weight, b = _leaves((3,), 6, 5, torch.float64, True)
    with llmkernels.use_backend("reference"):
        assert torch.autograd.gradcheck(llmkernels.linear, (x, weight, b))


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("lead,k,n", SHAPES)
@pytest.mark.parametrize("device,backend,dtype", backend_cases("linear"))
def test_backend_matches_the_product(device, backend, dtype, lead, k, n, bias):
    skip_unless_present("linear", device, backend, dtype)
    with llmkernels.use_backend(backend):
        _check_against_float64(*_leaves(lead, k, n, dtype, bias), dtype)


def test_cpp_runs_the_own_gemm_where_it_can():
    """The shapes above past the threshold do reach llmkernels' GEMM on this CPU (when it has one),
    so the comparisons test it and not torch.mm twice."""
    skip_unless_present("linear", "cpu", "cpp", torch.float32)
    x, weight = torch.randn(515, 384), torch.randn(257, 384)
    assert cpu_gemm.uses_own_gemm(x, weight.t(), "cpp") == cpu_gemm.available()


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_strided_inputs_and_frozen_operands(backend):
    skip_unless_present("linear", "cpu", backend, torch.float32)
    base = torch.randn(300, 2, 160)
    x = base[:, 1, 3:131].clone().requires_grad_(True)
    strided_x = base.transpose(0, 1)[1, :, 3:131]  # rows 320 floats apart, columns offset
    weight = torch.randn(128, 200).t().requires_grad_(True)  # (200, 128) over transposed storage
    with llmkernels.use_backend(backend):
        for inp in (x, strided_x):
            torch.testing.assert_close(llmkernels.linear(inp, weight), F.linear(inp, weight), rtol=1e-5, atol=1e-4)
        frozen = weight.detach()
        out = llmkernels.linear(x, frozen)
        (gx,) = torch.autograd.grad(out, (x,), torch.ones_like(out))
        torch.testing.assert_close(gx, torch.ones_like(out) @ frozen, rtol=1e-5, atol=1e-4)
        no_input_grad = llmkernels.linear(strided_x, weight)
        (gw,) = torch.autograd.grad(no_input_grad, (weight,), torch.ones_like(no_input_grad))
        torch.testing.assert_close(gw, torch.ones_like(no_input_grad).t() @ strided_x, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_empty_inputs(backend):
    skip_unless_present("linear", "cpu", backend, torch.float32)
    with llmkernels.use_backend(backend):
        x, weight, b = torch.randn(0, 5, requires_grad=True), torch.randn(3, 5, requires_grad=True), torch.randn(3, requires_grad=True)
        out = llmkernels.linear(x, weight, b)
        assert out.shape == (0, 3)
        gx, gw, gb = torch.autograd.grad(out.sum(), (x, weight, b))
        assert gx.shape == (0, 5) and torch.equal(gw, torch.zeros(3, 5)) and torch.equal(gb, torch.zeros(3))
        empty_depth = llmkernels.linear(torch.randn(4, 0), torch.randn(3, 0), b.detach())
        torch.testing.assert_close(empty_depth, b.detach().expand(4, 3))


def test_bad_inputs_name_the_argument():
    x, weight = torch.randn(4, 5), torch.randn(3, 5)
    cases = [
        (lambda: llmkernels.linear(x, torch.randn(3, 6)), "x's last dimension"),
        (lambda: llmkernels.linear(x, torch.randn(3, 5, 1)), "weight must have 2 dimensions"),
        (lambda: llmkernels.linear(x, weight.double()), "weight must have dtype"),
        (lambda: llmkernels.linear(x, weight, torch.randn(4)), "bias must have weight's out_features"),
        (lambda: llmkernels.linear(x, weight, torch.randn(3, 1)), "bias must have 1 dimensions"),
        (lambda: llmkernels.linear(torch.tensor(1.0), weight), "x must have at least one dimension"),
        (lambda: llmkernels.linear(x.long(), weight), "x must have dtype"),
        (lambda: llmkernels.linear("x", weight), "x must be a torch.Tensor"),
    ]
    for call, message in cases:
        with pytest.raises((ValueError, TypeError), match=message):
            call()


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_opcheck(backend):
    skip_unless_present("linear", "cpu", backend, torch.float32)
    ops = torch.ops.llmkernels
    x, weight, b = torch.randn(2, 3, 8, requires_grad=True), torch.randn(5, 8, requires_grad=True), torch.randn(5, requires_grad=True)
    torch.library.opcheck(ops.linear, (x, weight, b, backend))
    torch.library.opcheck(ops.linear, (x, weight, None, backend))
    grad = torch.randn(2, 3, 5)
    torch.library.opcheck(ops.linear_backward, (grad, x.detach(), weight.detach(), True, True, True, backend))
    torch.library.opcheck(ops.linear_backward, (grad, x.detach(), weight.detach(), False, True, False, backend))


@pytest.mark.parametrize("compiler", ["aot_eager", "inductor"])
def test_compile_fullgraph_forward_backward(compiler):
    leaves = [torch.randn(2, 9, 8), torch.randn(5, 8), torch.randn(5)]
    step = lambda x, weight, b: llmkernels.linear(F.silu(llmkernels.linear(x, weight, b)), weight[:, :5])  # noqa: E731
    assert_compiled_matches_eager(step, [t.requires_grad_(True) for t in leaves], compiler)


def test_autocast_casts_as_f_linear_does():
    x, weight, b = torch.randn(4, 16), torch.randn(8, 16), torch.randn(8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, want = llmkernels.linear(x, weight, b), F.linear(x, weight, b)
    assert got.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.float(), rtol=1e-2, atol=1e-2)


def test_module_is_nn_linear_with_the_same_state_and_output():
    torch.manual_seed(0)
    ours = llmkernels.nn.Linear(24, 10)
    torch.manual_seed(0)
    theirs = torch.nn.Linear(24, 10)
    assert isinstance(ours, torch.nn.Linear) and ours.state_dict().keys() == theirs.state_dict().keys()
    assert all(torch.equal(ours.state_dict()[k], theirs.state_dict()[k]) for k in theirs.state_dict())
    baseline = llmkernels.nn.Linear(24, 10, ops="torch")
    baseline.load_state_dict(theirs.state_dict())
    x = torch.randn(3, 24)
    torch.testing.assert_close(ours(x), theirs(x))
    assert torch.equal(baseline(x), theirs(x))
    with pytest.raises(ValueError, match="ops must be one of"):
        llmkernels.nn.Linear(2, 2, ops="cuda")
