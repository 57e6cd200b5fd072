"""GeGLU: gelu(gate) * up on the swiglu kernels (the activation their template/constexpr
parameter): reference against F.gelu in float64, every backend against it forward and backward."""

import pytest
import torch
import torch.nn.functional as F

import llmkernels
from tests.helpers import assert_close, backend_cases, skip_unless_present
from tests.ops.test_swiglu import FORMS, _leaves

APPROXIMATE = ["none", "tanh"]


def _check_against_gelu(leaves, gate, up, dtype, approximate):
    out = llmkernels.geglu(*leaves, approximate=approximate)
    assert out.dtype == dtype and out.shape == gate.shape
    g, u = gate.detach().double().requires_grad_(True), up.detach().double().requires_grad_(True)
    expected = F.gelu(g, approximate=approximate) * u
    assert_close(out, expected, dtype)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    want = [torch.cat((g.grad, u.grad), -1)] if len(leaves) == 1 else [g.grad, u.grad]
    for leaf, w in zip(leaves, want):
        assert_close(leaf.grad, w, dtype)


@pytest.mark.parametrize("approximate", APPROXIMATE)
@pytest.mark.parametrize("form", FORMS)
def test_reference_is_gelu_times_up(form, approximate):
    leaves, gate, up = _leaves(form, (4, 3), 37, torch.float64, "cpu")
    with llmkernels.use_backend("reference"):
        _check_against_gelu(leaves, gate, up, torch.float64, approximate)


@pytest.mark.parametrize("device,backend,dtype", backend_cases("geglu"))
@pytest.mark.parametrize("approximate", APPROXIMATE)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("shape", [((1,), 1), ((3, 2), 7), ((2, 3), 1000)], ids=lambda s: "x".join(map(str, (*s[0], s[1]))))
def test_backend_forward_backward(device, backend, dtype, approximate, form, shape):
    skip_unless_present("geglu", device, backend, dtype)
    leaves, gate, up = _leaves(form, *shape, dtype, device)
    with torch.no_grad():
        gate.mul_(3)  # spread the gates over gelu's curved range
    with llmkernels.use_backend(backend):
        _check_against_gelu(leaves, gate, up, dtype, approximate)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("backend", ["reference", "cpp", "triton"])
@pytest.mark.parametrize("approximate", APPROXIMATE)
def test_extreme_gates_stay_finite(backend, dtype, approximate):
    skip_unless_present("geglu", "cpu", backend, dtype)
    big = torch.finfo(dtype).max
    values = torch.tensor([-big, -1e4, -20.0, -9.0, -3.0, -1e-3, 0.0, 1e-3, 3.0, 9.0, 11.0, 20.0, 1e4, big])
    gate = values.to(dtype).repeat(2, 1).requires_grad_(True)
    up = (torch.rand(2, values.numel(), dtype=dtype) * 2 - 1).div(big).requires_grad_(True)
    with llmkernels.use_backend(backend):
        out = llmkernels.geglu(gate, up, approximate=approximate)
    out.backward(torch.ones_like(out))
    for t in (out, gate.grad, up.grad):
        assert torch.isfinite(t).all(), t
    with llmkernels.use_backend("reference"):
        g, u = gate.detach().clone().requires_grad_(True), up.detach().clone().requires_grad_(True)
        llmkernels.geglu(g, u, approximate=approximate).backward(torch.ones_like(out))
    assert_close(gate.grad, g.grad.double(), dtype)
    assert_close(up.grad, u.grad.double(), dtype)


@pytest.mark.parametrize("approximate", APPROXIMATE)
def test_cpp_every_isa_level(approximate):
    skip_unless_present("geglu", "cpu", "cpp", torch.float32)
    C = llmkernels._native.extension()
    gate_up = torch.randn(9, 2 * 77) * 3
    with llmkernels.use_backend("reference"):
        expected = llmkernels.geglu(gate_up.double(), approximate=approximate)
    previous = C.cpu_isa()
    try:
        for level in C.build_info()["cpu_isa_supported"]:
            C.set_cpu_isa(level)
            assert_close(torch.ops.llmkernels.geglu(gate_up, None, approximate, "cpp"), expected, torch.float32)
    finally:
        C.set_cpu_isa(previous)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_opcheck_and_bad_approximate(backend):
    skip_unless_present("geglu", "cpu", backend, torch.float32)
    gate, up = torch.randn(3, 5, 9, requires_grad=True), torch.randn(3, 5, 9, requires_grad=True)
    ops = torch.ops.llmkernels
    torch.library.opcheck(ops.geglu, (gate, up, "tanh", backend))
    torch.library.opcheck(ops.geglu, (torch.randn(3, 18, requires_grad=True), None, "none", backend))
    torch.library.opcheck(ops.geglu_backward, (torch.randn(3, 5, 9), gate.detach(), up.detach(), "none", backend))
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        llmkernels.geglu(gate, up, approximate="erf")


def test_cpp_exact_gelu_keeps_relative_accuracy_in_the_left_tail():
    # Found by the property tests: the erf approximation had an absolute error of 1.5e-7, ~5e-5
    # relative where Phi(g) is ~1e-3 (g = -3), visible once `up` is large.
    skip_unless_present("geglu", "cpu", "cpp", torch.float32)
    gate = torch.linspace(-6, 6, 20001).float()
    expected = torch.nn.functional.gelu(gate.double())
    with llmkernels.use_backend("cpp"):
        got = llmkernels.geglu(gate, torch.ones_like(gate)).double()
    keep = expected.abs() > 1e-6
    assert ((got - expected).abs() / expected.abs())[keep].max() < 1e-5
