"""Fused linear cross-entropy against F.cross_entropy on full logits (and F.linear_cross_entropy)."""

import pytest
import torch
import torch.nn.functional as F

import llmkernels
from tests.helpers import TOLERANCES, backend_cases, skip_unless_present


def _problem(rows, hidden, vocab, dtype, device="cpu", bias=True):
    x = (torch.randn(rows, hidden, device=device) / hidden**0.25).to(dtype)
    w = (torch.randn(vocab, hidden, device=device) / hidden**0.25).to(dtype)
    b = torch.randn(vocab, device=device).to(dtype) if bias else None
    t = torch.randint(0, vocab, (rows,), device=device)
    t[torch.rand(rows, device=device) < 0.15] = -100
    return x, w, b, t


def _check(actual, expected, dtype):
    tol = TOLERANCES[dtype]
    scale = expected.abs().max().clamp_min(1.0)
    torch.testing.assert_close(actual.double() / scale, expected.double() / scale, **tol)


@pytest.mark.parametrize("device,backend,dtype", backend_cases("linear_cross_entropy", dtypes=(torch.float32, torch.bfloat16)) + [pytest.param("cpu", "reference", torch.float32, id="cpu-reference-float32")])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1, "z_loss": 1e-3, "softcap": 20.0, "weight": True}], ids=["plain", "all-options"])
@pytest.mark.parametrize("chunk_size", [None, 5])
def test_matches_full_logits(device, backend, dtype, reduction, options, chunk_size):
    if backend != "reference":
        skip_unless_present("linear_cross_entropy", device, backend, dtype)
    rows, hidden, vocab = (23, 16, 50) if backend == "triton" else (97, 48, 1000)
    x, w, b, t = _problem(rows, hidden, vocab, dtype, device)
    class_weight = torch.rand(vocab, device=device) + 0.2 if options.get("weight") else None
    kwargs = {k: v for k, v in options.items() if k != "weight"}
    leaves = [x.clone().requires_grad_(True), w.clone().requires_grad_(True), b.clone().requires_grad_(True)]
    with llmkernels.use_backend(backend):
        loss = llmkernels.linear_cross_entropy(
            leaves[0], leaves[1], t, linear_bias=leaves[2], weight=class_weight, reduction=reduction, chunk_size=chunk_size, **kwargs
        )
    if dtype == torch.float32:
        # float32 is held to float64 full logits (and, without options, to F.cross_entropy).
        ref = [p.detach().double().requires_grad_(True) for p in (x, w, b)]
        logits = ref[0] @ ref[1].T + ref[2]
        with llmkernels.use_backend("reference"):
            expected = llmkernels.cross_entropy(
                logits, t, None if class_weight is None else class_weight.double(), reduction=reduction, **kwargs
            )
        if not options:
            torch.testing.assert_close(expected, F.cross_entropy(logits, t, reduction=reduction).nan_to_num(0.0))
    else:
        # Low precision: the spec is the reference backend on the same inputs, whose GEMMs and
        # per-row gradients round to the input dtype exactly where every backend's do (summing
        # ~100 bf16-rounded rows into a bias gradient is not float64-accurate anywhere).
        ref = [p.detach().clone().requires_grad_(True) for p in (x, w, b)]
        with llmkernels.use_backend("reference"):
            expected = llmkernels.linear_cross_entropy(
                ref[0], ref[1], t, linear_bias=ref[2], weight=class_weight, reduction=reduction, chunk_size=chunk_size, **kwargs
            )
    _check(loss, expected, dtype)
    upstream = torch.randn_like(expected, dtype=torch.float64)
    grads = torch.autograd.grad(loss, leaves, upstream.to(loss.dtype))
    expected_grads = torch.autograd.grad(expected, ref, upstream.to(expected.dtype))
    for got, want in zip(grads, expected_grads):
        _check(got, want, dtype)


@pytest.mark.parametrize("device,backend,dtype", backend_cases("linear_cross_entropy", dtypes=(torch.bfloat16,)) + [pytest.param("cpu", "reference", torch.bfloat16, id="cpu-reference-bfloat16")])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_float32_master_weight_with_a_low_precision_input(device, backend, dtype, reduction):
    """A float32 weight and bias with a bf16 input: the projection runs on the weight cast to bf16
    (the specification: the reference on the cast weight), the weight and bias gradients come back
    in float32, the input's in bf16."""
    if backend != "reference":
        skip_unless_present("linear_cross_entropy", device, backend, dtype)
    rows, hidden, vocab = (23, 16, 50) if backend == "triton" else (97, 48, 1000)
    x, w, b, t = _problem(rows, hidden, vocab, torch.float32, device)
    x = x.to(dtype)
    leaves = [x.clone().requires_grad_(True), w.clone().requires_grad_(True), b.clone().requires_grad_(True)]
    with llmkernels.use_backend(backend):
        loss = llmkernels.linear_cross_entropy(leaves[0], leaves[1], t, linear_bias=leaves[2], reduction=reduction, chunk_size=7)
    ref = [p.detach().clone().requires_grad_(True) for p in (x, w, b)]
    with llmkernels.use_backend("reference"):
        expected = llmkernels.linear_cross_entropy(ref[0], ref[1].to(dtype), t, linear_bias=ref[2].to(dtype),
                                                   reduction=reduction, chunk_size=7)
    _check(loss, expected, dtype)
    upstream = torch.randn_like(expected, dtype=torch.float64)
    grads = torch.autograd.grad(loss, leaves, upstream.to(loss.dtype))
    expected_grads = torch.autograd.grad(expected, ref, upstream.to(expected.dtype))
    assert [g.dtype for g in grads] == [dtype, torch.float32, torch.float32]
    for got, want in zip(grads, expected_grads):
        _check(got, want, dtype)


def test_the_float32_weight_gradient_summed_in_slices_is_the_whole_sum(monkeypatch):
    """A bf16 chunk's weight gradient is added into the float32 sum a slice of rows at a time: with
    slices of 7 rows (the last one short) every element receives the same additions in the same
    order as with one slice, so the gradients are bitwise equal."""
    from llmkernels.ops.common import chunked_linear

    x, w, b, t = _problem(97, 48, 1000, torch.float32, "cpu")
    x = x.to(torch.bfloat16)

    def grads():
        leaves = [x.clone().requires_grad_(True), w.clone().requires_grad_(True), b.clone().requires_grad_(True)]
        loss = llmkernels.linear_cross_entropy(leaves[0], leaves[1], t, linear_bias=leaves[2], chunk_size=13)
        return torch.autograd.grad(loss, leaves)

    whole = grads()
    monkeypatch.setattr(chunked_linear, "ACCUMULATE_ELEMENTS", 7 * 48)
    sliced = grads()
    for got, want in zip(sliced, whole):
        assert torch.equal(got, want)


def test_gpu_chunks_are_sized_in_rows_and_cpu_chunks_in_logits(monkeypatch):
    """On a GPU every chunk's pass over the (V, H) weight-gradient sum costs ~220/rows of its GEMMs
    whatever V: chunks there hold at least GPU_CHUNK_ROWS rows; a CPU keeps its logits budget, and an
    explicit chunk_size wins on both."""
    from llmkernels.ops.common import chunked_linear
    from llmkernels.ops import linear_cross_entropy as lce_module

    rows_for = chunked_linear.rows_per_chunk
    gpu_rows = chunked_linear.GPU_CHUNK_ROWS
    assert rows_for(8192, 131072, 0) == chunked_linear.CHUNK_ELEMENTS // 131072
    assert rows_for(8192, 131072, 0, device_type="cuda") == gpu_rows
    assert rows_for(100_000, 1000, 0, device_type="cuda") == chunked_linear.CHUNK_ELEMENTS // 1000  # budget holds more
    assert rows_for(1000, 131072, 0, device_type="cuda") == 1000  # never more rows than there are
    assert rows_for(8192, 131072, 256, device_type="cuda") == 256 and rows_for(8192, 131072, 256) == 256

    seen = []
    monkeypatch.setattr(lce_module, "rows_per_chunk", lambda *a, **k: seen.append(k.get("device_type")) or rows_for(*a, **k))
    x, w, _, t = _problem(40, 16, 64, torch.float32, bias=False)
    llmkernels.linear_cross_entropy(x.requires_grad_(), w, t).backward()
    assert seen and set(seen) == {"cpu"}


def test_autocast_passes_a_float32_weight_through():
    """Under autocast the float32 weight is not cast outside the op: its gradient is the mixed call's,
    bit for bit, with no cast node (and no bf16 copy of the weight) in the graph."""
    x, w, _, t = _problem(40, 16, 64, torch.float32, bias=False)
    w.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = llmkernels.linear_cross_entropy(x, w, t, chunk_size=16)
    assert not any("ToCopy" in type(f).__name__ for f, _ in loss.grad_fn.next_functions if f is not None)
    (autocast_grad,) = torch.autograd.grad(loss, (w,))
    (mixed_grad,) = torch.autograd.grad(llmkernels.linear_cross_entropy(x.bfloat16(), w, t, chunk_size=16), (w,))
    assert autocast_grad.dtype == torch.float32
    assert torch.equal(autocast_grad, mixed_grad)


def test_matches_torch_linear_cross_entropy_and_leading_dims():
    x, w, _, t = _problem(24, 16, 40, torch.float32, bias=False)
    x3, t2 = x.reshape(2, 12, 16), t.reshape(2, 12)
    ours = llmkernels.linear_cross_entropy(x3, w, t2, reduction="none", options=object())
    assert ours.shape == (2, 12)
    expected = F.cross_entropy(x @ w.T, t, reduction="none").reshape(2, 12)
    torch.testing.assert_close(ours, expected)
    if hasattr(F, "linear_cross_entropy"):
        torch.testing.assert_close(llmkernels.linear_cross_entropy(x, w, t), F.linear_cross_entropy(x, w, t))


def test_bf16_autocast_runs_matmuls_in_bf16():
    x, w, _, t = _problem(31, 16, 64, torch.float32, bias=False)
    x.requires_grad_(True)
    w.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = llmkernels.linear_cross_entropy(x, w, t)
    assert loss.dtype == torch.float32
    loss.backward()
    assert x.grad.dtype == torch.float32 and w.grad.dtype == torch.float32
    expected = F.cross_entropy((x.bfloat16() @ w.bfloat16().T).float(), t)
    torch.testing.assert_close(loss, expected, rtol=1e-2, atol=1e-2)


def test_all_ignored_and_modules():
    x, w, _, t = _problem(9, 8, 20, torch.float32, bias=False)
    x.requires_grad_(True)
    loss = llmkernels.nn.LinearCrossEntropyLoss()(x, w, torch.full_like(t, -100))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))
    logits = torch.randn(9, 20)
    torch.testing.assert_close(llmkernels.nn.CrossEntropyLoss(label_smoothing=0.2)(logits, t), F.cross_entropy(logits, t, label_smoothing=0.2))


def test_opcheck_and_compile():
    x, w, b, t = _problem(13, 8, 30, torch.float32)
    for compute_grad, reduction in ((True, "mean"), (False, "none")):
        torch.library.opcheck(
            torch.ops.llmkernels.linear_cross_entropy,
            (x.requires_grad_(compute_grad), w.requires_grad_(compute_grad), b, t, None, -100, reduction, 0.0, 0.0, None, 4, True, compute_grad, "auto"),
        )
    x, w = x.detach().requires_grad_(True), w.detach().requires_grad_(True)
    step = torch.compile(lambda a, c: llmkernels.linear_cross_entropy(a * 1.5, c, t, chunk_size=4), fullgraph=True, backend="aot_eager")
    loss = step(x, w)
    grads = torch.autograd.grad(loss, (x, w))
    eager = llmkernels.linear_cross_entropy(x * 1.5, w, t, chunk_size=4)
    for got, want in zip(grads, torch.autograd.grad(eager, (x, w))):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda x, w, t: (x, w[:, :4], t), r"linear_weight must be \(vocab, 8\)"),
        (lambda x, w, t: (x, w.double(), t), "linear_weight must have input's dtype"),
        (lambda x, w, t: (x.bfloat16(), w.half(), t), "linear_weight must have input's dtype"),
        (lambda x, w, t: (x.float(), w.bfloat16(), t), "linear_weight must have input's dtype"),
        (lambda x, w, t: (x, w, t[:-1]), "target must have shape"),
        (lambda x, w, t: (x, w, t.float()), "class indices"),
        (lambda x, w, t: (x, w, t + 1000), "target values must lie"),
    ],
)
def test_bad_inputs(make, match):
    x, w, _, t = _problem(9, 8, 20, torch.float32, bias=False)
    with pytest.raises(ValueError, match=match):
        llmkernels.linear_cross_entropy(*make(x, w, t))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_float64_accumulation_of_lower_precision_weights_is_refused(dtype):
    # It was accepted and silently summed in float32.
    x, w, _, t = _problem(9, 8, 20, dtype, bias=False)
    with pytest.raises(ValueError, match="accum_dtype torch.float64 needs float64 weights"):
        llmkernels.linear_cross_entropy(x, w, t, accum_dtype=torch.float64)
    with pytest.raises(ValueError, match="accum_dtype must be"):
        llmkernels.linear_cross_entropy(x, w, t, accum_dtype=torch.float16 if dtype == torch.bfloat16 else torch.bfloat16)


@pytest.mark.parametrize("accum_dtype", [torch.float32, torch.float64])
def test_float64_weights_accumulate_in_float64(accum_dtype):
    # Float64 weights used to have their gradient summed across chunks in float32 by default.
    x, w, b, t = _problem(64, 16, 300, torch.float64)
    leaves = [v.clone().requires_grad_(True) for v in (x, w, b)]
    loss = llmkernels.linear_cross_entropy(leaves[0], leaves[1], t, linear_bias=leaves[2], chunk_size=3, accum_dtype=accum_dtype)
    grads = torch.autograd.grad(loss, leaves)
    full = [v.clone().requires_grad_(True) for v in (x, w, b)]
    expected = F.cross_entropy(F.linear(full[0], full[1], full[2]), t)
    for got, want in zip(grads, torch.autograd.grad(expected, full)):
        assert got.dtype == torch.float64
        _check(got, want, torch.float64)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_no_rows_backward_gives_zero_gradients_of_the_inputs_shapes(backend, reduction):
    # Found by tests/property: with reduction 'none' the backward handed back the forward's empty
    # placeholders (shape (0,)) as the input and weight gradients, and autograd refused them.
    skip_unless_present("linear_cross_entropy", "cpu", backend, torch.float32)
    x = torch.randn(2, 0, 3, requires_grad=True)
    w = torch.randn(5, 3, requires_grad=True)
    b = torch.randn(5, requires_grad=True)
    with llmkernels.use_backend(backend):
        loss = llmkernels.linear_cross_entropy(x, w, torch.zeros(2, 0, dtype=torch.long), linear_bias=b, reduction=reduction)
    grads = torch.autograd.grad(loss.sum(), (x, w, b))
    for grad, leaf in zip(grads, (x, w, b)):
        assert torch.equal(grad, torch.zeros_like(leaf))


@pytest.mark.parametrize("device,backend,dtype", backend_cases("linear_cross_entropy", dtypes=(torch.float32,)) + [pytest.param("cpu", "reference", torch.float32, id="cpu-reference-float32")])
def test_backward_builds_no_zero_gradient_for_the_formed_outputs(device, backend, dtype):
    skip_unless_present("linear_cross_entropy", device, backend, dtype)
    # The op's extra outputs (lse, the formed gradients) are never differentiated: autograd handed
    # the backward a zero-filled gradient of each, a (vocab, hidden) one included, every step.
    from torch.utils._python_dispatch import TorchDispatchMode

    class Allocations(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.shapes = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func in (torch.ops.aten.zeros.default, torch.ops.aten.zeros_like.default, torch.ops.aten.fill_.Scalar):
                self.shapes.append(tuple(out.shape))
            return out

    x, w, b, t = _problem(12, 8, 40, dtype, device)
    leaves = [v.requires_grad_() for v in (x, w, b)]
    with llmkernels.use_backend(backend):
        loss = llmkernels.linear_cross_entropy(x, w, t, linear_bias=b)
    with Allocations() as seen:
        grads = torch.autograd.grad(loss * 0.5, leaves)
    assert tuple(w.shape) not in seen.shapes, seen.shapes
    logits = F.linear(x.detach().double(), w.detach().double(), b.detach().double()).requires_grad_()
    (expected,) = torch.autograd.grad(F.cross_entropy(logits, t) * 0.5, logits)
    _check(grads[1], (expected.t() @ x.detach().double()).to(dtype), dtype)
