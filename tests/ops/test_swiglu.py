"""SwiGLU: the reference against the float64 formula, every backend against the reference forward
and backward (both forms, odd sizes, strided rows, chunk views, extremes), opcheck, compile, errors."""

import pytest
import torch
import torch.nn.functional as F

import llmkernels
from llmkernels.ops.swiglu import reference
from tests.helpers import assert_close, assert_compiled_matches_eager, backend_cases, skip_unless_present

# Leading shape and H (the output's last dim): odd sizes and the GPT's MLP width.
SHAPES = [((1,), 1), ((3,), 7), ((2, 5), 1000), ((2, 3), 2816), ((129,), 33)]
FORMS = ["split", "packed"]


def _expected(gate, up):
    """silu(gate) * up in float64, autograd's own derivative of it: the spec, written plainly."""
    g, u = gate.detach().double().requires_grad_(True), up.detach().double().requires_grad_(True)
    return g, u, F.silu(g) * u


def _leaves(form, lead, hidden, dtype, device, low=None):
    if form == "packed":
        gate_up = torch.randn(*lead, 2 * hidden, device=device, dtype=dtype)
        if low is not None:
            gate_up[..., :hidden] = low
        leaf = gate_up.requires_grad_(True)
        return (leaf,), leaf[..., :hidden], leaf[..., hidden:]
    gate = torch.randn(*lead, hidden, device=device, dtype=dtype)
    if low is not None:
        gate.copy_(low)
    gate.requires_grad_(True)
    up = torch.randn(*lead, hidden, device=device, dtype=dtype, requires_grad=True)
    return (gate, up), gate, up


def _check_against_formula(leaves, gate, up, dtype):
    """Forward and backward of llmkernels.swiglu(*leaves) (current backend) against the float64 spec."""
    out = llmkernels.swiglu(*leaves)
    assert out.dtype == dtype and out.shape == gate.shape
    g, u, expected = _expected(gate, up)
    assert_close(out, expected, dtype)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    if len(leaves) == 1:
        assert leaves[0].grad.shape == leaves[0].shape
        assert_close(leaves[0].grad, torch.cat((g.grad, u.grad), -1), dtype)
    else:
        assert_close(leaves[0].grad, g.grad, dtype)
        assert_close(leaves[1].grad, u.grad, dtype)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reference_is_the_formula(form, dtype):
    leaves, gate, up = _leaves(form, (4, 3), 37, dtype, "cpu")
    with llmkernels.use_backend("reference"):
        _check_against_formula(leaves, gate, up, dtype)


def test_reference_gradcheck_float64():
    gate = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    up = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    gate_up = torch.randn(2, 3, 10, dtype=torch.float64, requires_grad=True)
    with llmkernels.use_backend("reference"):
        assert torch.autograd.gradcheck(llmkernels.swiglu, (gate, up))
        assert torch.autograd.gradcheck(llmkernels.swiglu, (gate_up,))


@pytest.mark.parametrize("device,backend,dtype", backend_cases("swiglu"))
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, (*s[0], s[1]))))
def test_backend_forward_backward(device, backend, dtype, form, shape):
    skip_unless_present("swiglu", device, backend, dtype)
    lead, hidden = shape
    if backend == "triton" and device == "cpu" and torch.Size(lead).numel() * hidden > 20000:
        pytest.skip("the Triton interpreter is slow: small shapes only")
    leaves, gate, up = _leaves(form, lead, hidden, dtype, device)
    with llmkernels.use_backend(backend):
        _check_against_formula(leaves, gate, up, dtype)


def _against_reference(backend, fn, *leaves):
    """fn's output and the gradients of leaves on `backend` equal the reference backend's."""
    results = []
    for name in ("reference", backend):
        for leaf in leaves:
            leaf.grad = None
        with llmkernels.use_backend(name):
            out = fn(*leaves)
        grad = torch.linspace(-2, 2, out.numel(), dtype=out.dtype, device=out.device).reshape(out.shape)
        out.backward(grad)
        results.append([out.detach().clone()] + [leaf.grad.clone() for leaf in leaves])
    for got, want in zip(results[1], results[0]):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert_close(got, want.double())


@pytest.mark.parametrize("device,backend,dtype", backend_cases("swiglu", dtypes=(torch.float32, torch.float16)))
def test_strided_rows_and_chunk_views(device, backend, dtype):
    skip_unless_present("swiglu", device, backend, dtype)
    base = torch.randn(3, 5, 2, 46, device=device, dtype=dtype)
    # Rows with a gap between them, and leading dims transposed (no (rows, H) view exists).
    strided = base[:, :, 0].clone().requires_grad_(True)
    _against_reference(backend, lambda g, u: llmkernels.swiglu(g[..., 1:41], u[..., 2:42]), strided, strided.detach().clone().requires_grad_(True))
    gate = base.transpose(0, 1).clone().requires_grad_(True)
    _against_reference(backend, lambda g: llmkernels.swiglu(g.transpose(0, 2)[..., :20], g.transpose(0, 2)[..., 20:40]), gate)
    # A chunk() view of a packed tensor, as the GPT's MLP writes it, and the packed form of it.
    packed = torch.randn(4, 7, 2 * 23, device=device, dtype=dtype, requires_grad=True)
    _against_reference(backend, lambda x: llmkernels.swiglu(*x.chunk(2, dim=-1)), packed)
    _against_reference(backend, lambda x: llmkernels.swiglu(x[:, 1:6]), packed)
    # A last dim that is not dense is copied once, not refused.
    cols = torch.randn(2 * 23, 9, device=device, dtype=dtype).t().requires_grad_(True)
    _against_reference(backend, lambda x: llmkernels.swiglu(x), cols)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("backend", ["reference", "cpp", "triton"])
def test_extreme_gates_stay_finite(backend, dtype):
    skip_unless_present("swiglu", "cpu", backend, dtype)
    big = torch.finfo(dtype).max if dtype != torch.float32 else 1e4
    values = torch.tensor([-big, -1e4, -500.0, -88.7, -87.0, -20.0, -1.0, 0.0, 1.0, 20.0, 87.0, 88.7, 500.0, 1e4, big])
    gate = values.clamp(torch.finfo(dtype).min, torch.finfo(dtype).max).to(dtype).repeat(3, 1).requires_grad_(True)
    up = torch.rand(3, values.numel(), dtype=dtype).mul(2).sub(1).div(max(big, 1e4)).requires_grad_(True)
    with llmkernels.use_backend(backend):
        out = llmkernels.swiglu(gate, up)
    out.backward(torch.ones_like(out))
    for t in (out, gate.grad, up.grad):
        assert torch.isfinite(t).all(), t
    g, u, expected = _expected(gate, up)
    expected.backward(torch.ones_like(expected))
    assert_close(out, expected, dtype)
    assert_close(up.grad, u.grad, dtype)
    assert_close(gate.grad, g.grad, dtype)


def test_empty_inputs():
    for backend in llmkernels.available_backends("cpu", "swiglu"):
        with llmkernels.use_backend(backend):
            for leaves in ((torch.randn(0, 8, requires_grad=True),), (torch.randn(3, 0, requires_grad=True),),
                           (torch.randn(2, 0, 5, requires_grad=True), torch.randn(2, 0, 5, requires_grad=True))):
                out = llmkernels.swiglu(*leaves)
                assert out.shape == leaves[-1].shape[:-1] + (leaves[-1].shape[-1] // (2 if len(leaves) == 1 else 1),)
                out.sum().backward()
                assert all(leaf.grad.shape == leaf.shape for leaf in leaves)


def test_only_the_inputs_are_saved():
    """The backward recomputes sigmoid(gate): what autograd keeps is the input, nothing more."""
    saved = []
    gate_up = torch.randn(4, 64, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        llmkernels.swiglu(gate_up)
    assert len(saved) == 1 and saved[0].data_ptr() == gate_up.data_ptr()


def test_bad_inputs_name_the_argument():
    gate = torch.randn(2, 6)
    with pytest.raises(ValueError, match="up must have gate's shape"):
        llmkernels.swiglu(gate, torch.randn(2, 5))
    with pytest.raises(ValueError, match="gate_up's last dimension .* must be even"):
        llmkernels.swiglu(torch.randn(2, 7))
    with pytest.raises(ValueError, match="up must have gate's dtype"):
        llmkernels.swiglu(gate, torch.randn(2, 6, dtype=torch.float16))
    with pytest.raises(ValueError, match="up is on meta but gate is on cpu"):
        llmkernels.swiglu(gate, torch.randn(2, 6, device="meta"))
    with pytest.raises(TypeError, match="gate_up must be a torch.Tensor"):
        llmkernels.swiglu([1.0, 2.0])
    with pytest.raises(ValueError, match="gate must have dtype in"):
        llmkernels.swiglu(torch.ones(2, 3, dtype=torch.int64), torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="at least one dimension"):
        llmkernels.swiglu(torch.tensor(1.0), torch.tensor(2.0))
    with pytest.raises(ValueError, match="grad must have the output's shape"):
        torch.ops.llmkernels.swiglu_backward(torch.randn(2, 4), gate, None, "auto")


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_opcheck(backend):
    skip_unless_present("swiglu", "cpu", backend, torch.float32)
    gate, up = torch.randn(3, 5, 9, requires_grad=True), torch.randn(3, 5, 9, requires_grad=True)
    gate_up = torch.randn(3, 5, 18, requires_grad=True)
    ops = torch.ops.llmkernels
    torch.library.opcheck(ops.swiglu, (gate, up, backend))
    torch.library.opcheck(ops.swiglu, (gate_up, None, backend))
    torch.library.opcheck(ops.swiglu_backward, (torch.randn(3, 5, 9), gate.detach(), up.detach(), backend))
    torch.library.opcheck(ops.swiglu_backward, (torch.randn(3, 5, 9), gate_up.detach(), None, backend))


def _mlp_step(x, w_gate_up, w_down):
    h = llmkernels.swiglu(x @ w_gate_up)
    g, u = (x @ w_gate_up).chunk(2, dim=-1)
    return h @ w_down, llmkernels.swiglu(g, u)


@pytest.mark.parametrize("compiler", ["aot_eager", "inductor"])
def test_compile_fullgraph_forward_backward(compiler):
    leaves = [torch.randn(2, 5, 8), torch.randn(8, 2 * 12), torch.randn(12, 8)]
    assert_compiled_matches_eager(_mlp_step, [t.requires_grad_(True) for t in leaves], compiler)


def test_triton_interpreter_refuses_bf16():
    if "triton" not in llmkernels.available_backends("cpu", "swiglu"):
        pytest.skip("triton not present on cpu")
    with pytest.raises(RuntimeError, match="refuses bfloat16"):
        with llmkernels.use_backend("triton"):
            llmkernels.swiglu(torch.randn(2, 8, dtype=torch.bfloat16))


def test_reference_module_is_the_spec_of_the_backward():
    g, u, dy = torch.randn(3, 10, dtype=torch.float64), torch.randn(3, 10, dtype=torch.float64), torch.randn(3, 10, dtype=torch.float64)
    d_gate, d_up = reference.swiglu_backward(dy, g, u)
    s = 1 / (1 + torch.exp(-g))
    torch.testing.assert_close(d_up, dy * g * s)
    torch.testing.assert_close(d_gate, dy * u * (s + g * s * (1 - s)))


def _cpp_forward_backward(gate_up, grad):
    with llmkernels.use_backend("cpp"):
        out = torch.ops.llmkernels.swiglu(gate_up, None, "cpp")
        grads = torch.ops.llmkernels.swiglu_backward(grad, gate_up, None, "cpp")
    return out, grads


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cpp_every_isa_level_matches_and_fma_levels_bitwise_alike(dtype):
    """Every ISA level against the reference (row lengths that are no multiple of any vector
    width included). SiLU's exp uses fused multiply-adds, which the levels from AVX2 up share: those
    give the same bits; the generic level (no FMA) rounds twice where they round once."""
    skip_unless_present("swiglu", "cpu", "cpp", dtype)
    C = llmkernels._native.extension()
    gate_up = torch.randn(37, 2 * 301, dtype=dtype) * 4
    grad = torch.randn(37, 301, dtype=dtype)
    gate, up = gate_up.double().chunk(2, dim=-1)
    g, u, expected = _expected(gate, up)
    expected.backward(grad.double())
    expected_grads = torch.cat((g.grad, u.grad), -1)
    previous, fused = C.cpu_isa(), []
    try:
        for level in C.build_info()["cpu_isa_supported"]:
            C.set_cpu_isa(level)
            out, grads = _cpp_forward_backward(gate_up, grad)
            assert_close(out, expected, dtype)
            assert_close(grads, expected_grads, dtype)
            if level != "generic":
                fused.append((out, grads))
    finally:
        C.set_cpu_isa(previous)
    for out, grads in fused[1:]:
        assert torch.equal(out, fused[0][0]) and torch.equal(grads, fused[0][1])


def test_cpp_threads_and_streaming_stores_change_no_bit():
    """A large call (outputs past the streaming-store threshold, many tasks) equals the same rows
    computed one small call at a time, on one thread."""
    skip_unless_present("swiglu", "cpu", "cpp", torch.float32)
    gate_up = torch.randn(2048, 2 * 4100)
    grad = torch.randn(2048, 4100)
    out, grads = _cpp_forward_backward(gate_up, grad)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for rows in (slice(0, 3), slice(1000, 1001), slice(2040, 2048)):
            small_out, small_grads = _cpp_forward_backward(gate_up[rows], grad[rows])
            assert torch.equal(out[rows], small_out) and torch.equal(grads[rows], small_grads)
    finally:
        torch.set_num_threads(threads)
