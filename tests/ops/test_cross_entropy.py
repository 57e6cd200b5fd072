"""Cross-entropy: every present backend against F.cross_entropy and the float64 reference."""

import pytest
import torch
import torch.nn.functional as F

import llmkernels
from tests.helpers import assert_close, backend_cases, skip_unless_present

SHAPES = [(1, 1), (7, 13), (127, 1000), (33, 5000)]


def _inputs(rows, classes, dtype, device, ignore_fraction=0.2, scale=3.0):
    logits = (torch.randn(rows, classes, device=device) * scale).to(dtype)
    target = torch.randint(0, classes, (rows,), device=device)
    target[torch.rand(rows, device=device) < ignore_fraction] = -100
    return logits, target


def _small_for_interpreter(backend, device, rows, classes):
    if backend == "triton" and device == "cpu" and rows * classes > 40000:
        pytest.skip("the Triton interpreter is slow: small shapes only")


@pytest.mark.parametrize("device,backend,dtype", backend_cases("cross_entropy") + [pytest.param("cpu", "reference", torch.float32, id="cpu-reference-float32")])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("options", [{}, {"weight": True, "label_smoothing": 0.1}, {"label_smoothing": 0.3}], ids=["plain", "weight+smooth", "smooth"])
def test_matches_torch(device, backend, dtype, reduction, shape, options):
    if backend != "reference":
        skip_unless_present("cross_entropy", device, backend, dtype)
    _small_for_interpreter(backend, device, *shape)
    logits, target = _inputs(*shape, dtype, device)
    weight = torch.rand(shape[1], device=device) + 0.1 if options.get("weight") else None
    smoothing = options.get("label_smoothing", 0.0)
    leaf = logits.clone().requires_grad_(True)
    with llmkernels.use_backend(backend):
        loss = llmkernels.cross_entropy(leaf, target, weight, reduction=reduction, label_smoothing=smoothing)
    reference_leaf = logits.double().requires_grad_(True)
    expected = F.cross_entropy(reference_leaf, target, None if weight is None else weight.double(), reduction=reduction, label_smoothing=smoothing)
    if reduction == "mean" and (target == -100).all():
        expected = expected.nan_to_num(0.0)
    assert loss.dtype == dtype and loss.shape == expected.shape
    assert_close(loss, expected, dtype)
    upstream = torch.randn_like(expected)
    (grad,) = torch.autograd.grad(loss, leaf, upstream.to(loss.dtype))
    (expected_grad,) = torch.autograd.grad(expected, reference_leaf, upstream)
    assert torch.equal(logits, leaf.detach())  # the caller's logits are untouched
    assert_close(grad, expected_grad.nan_to_num(0.0), dtype)


def _zloss_softcap_formula(logits, target, z_loss, softcap, reduction):
    z = softcap * torch.tanh(logits / softcap) if softcap else logits
    ce = F.cross_entropy(z, target, reduction="none")
    valid = target != -100
    lse = torch.logsumexp(z, -1)
    zl = z_loss * lse.square() * valid
    if reduction == "none":
        return ce + zl
    if reduction == "sum":
        return ce.sum() + zl.sum()
    return ce.sum() / valid.sum() + zl.sum() / valid.sum()


@pytest.mark.parametrize("device,backend,dtype", backend_cases("cross_entropy", dtypes=(torch.float32, torch.bfloat16)) + [pytest.param("cpu", "reference", torch.float32, id="cpu-reference-float32")])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("z_loss,softcap", [(1e-3, None), (0.0, 30.0), (1e-2, 5.0)])
def test_z_loss_and_softcap(device, backend, dtype, reduction, z_loss, softcap):
    if backend != "reference":
        skip_unless_present("cross_entropy", device, backend, dtype)
    logits, target = _inputs(37, 301, dtype, device, scale=10.0)
    leaf = logits.clone().requires_grad_(True)
    with llmkernels.use_backend(backend):
        loss, lse = llmkernels.cross_entropy(leaf, target, reduction=reduction, z_loss=z_loss, softcap=softcap, return_lse=True)
    reference_leaf = logits.double().requires_grad_(True)
    expected = _zloss_softcap_formula(reference_leaf, target, z_loss, softcap, reduction)
    assert_close(loss, expected, dtype)
    capped = softcap * torch.tanh(logits.double() / softcap) if softcap else logits.double()
    assert_close(lse, torch.logsumexp(capped, -1), torch.float32 if dtype == torch.float32 else dtype)
    upstream = torch.randn_like(expected)
    (grad,) = torch.autograd.grad(loss, leaf, upstream.to(loss.dtype))
    (expected_grad,) = torch.autograd.grad(expected, reference_leaf, upstream)
    assert_close(grad, expected_grad, dtype)


@pytest.mark.parametrize("backend", ["reference", "cpp", "triton"])
def test_all_ignored_mean_is_zero_with_zero_grad(backend):
    if backend != "reference":
        skip_unless_present("cross_entropy", "cpu", backend, torch.float32)
    logits = torch.randn(5, 9, requires_grad=True)
    target = torch.full((5,), -100)
    with llmkernels.use_backend(backend):
        loss = llmkernels.cross_entropy(logits, target, z_loss=1e-3)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("backend", ["reference", "cpp", "triton"])
def test_huge_logits_stay_finite(backend):
    if backend != "reference":
        skip_unless_present("cross_entropy", "cpu", backend, torch.float32)
    logits = (torch.randn(6, 100) * 1e4).requires_grad_(True)
    target = torch.randint(0, 100, (6,))
    with llmkernels.use_backend(backend):
        loss = llmkernels.cross_entropy(logits, target, label_smoothing=0.1)
    loss.backward()
    expected = F.cross_entropy(logits.double(), target, label_smoothing=0.1)
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-2)


def test_spatial_shapes_like_torch():
    logits = torch.randn(2, 5, 3, 4, requires_grad=True)
    target = torch.randint(0, 5, (2, 3, 4))
    for reduction in ("mean", "none"):
        loss, lse = llmkernels.cross_entropy(logits, target, reduction=reduction, return_lse=True)
        expected = F.cross_entropy(logits, target, reduction=reduction)
        torch.testing.assert_close(loss, expected)
        assert lse.shape == target.shape
    single = torch.randn(5)
    torch.testing.assert_close(llmkernels.cross_entropy(single, torch.tensor(2)), F.cross_entropy(single, torch.tensor(2)))


CPU_BACKENDS = [b for b in ("reference", "cpp") if b in llmkernels.available_backends("cpu", "cross_entropy")]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_opcheck(backend):
    logits, target = _inputs(9, 17, torch.float32, "cpu")
    weight = torch.rand(17)
    ops = torch.ops.llmkernels
    for reduction in ("mean", "none"):
        torch.library.opcheck(
            ops.cross_entropy, (logits.requires_grad_(True), target, weight, -100, reduction, 0.1, 1e-3, 20.0, backend)
        )
    grad_loss = torch.randn(())
    torch.library.opcheck(ops.cross_entropy_backward, (grad_loss, logits.detach(), target, None, -100, "mean", 0.0, 0.0, None, backend))


@pytest.mark.parametrize("compiler", ["aot_eager", "inductor"])
def test_compile_fullgraph(compiler):
    logits, target = _inputs(9, 17, torch.float32, "cpu")
    logits.requires_grad_(True)

    def step(x, t):
        return llmkernels.cross_entropy(x * 2.0, t, label_smoothing=0.1, z_loss=1e-3)

    compiled = torch.compile(step, fullgraph=True, backend=compiler)
    loss = compiled(logits, target)
    (grad,) = torch.autograd.grad(loss, logits)
    eager = step(logits, target)
    (eager_grad,) = torch.autograd.grad(eager, logits)
    torch.testing.assert_close(loss, eager)
    torch.testing.assert_close(grad, eager_grad)


BAD = [
    (lambda x, t: (x, t.float()), {}, "class indices"),
    (lambda x, t: (x, t[:-1]), {}, "target has 5 rows but input has 6"),
    (lambda x, t: (x, t + 100), {}, r"target values must lie in \[0, 9\)"),
    (lambda x, t: (x, t), {"weight": torch.ones(4)}, "one value per class"),
    (lambda x, t: (x, t), {"label_smoothing": 1.5}, "label_smoothing"),
    (lambda x, t: (x, t), {"softcap": float("inf")}, "softcap"),
    (lambda x, t: (x, t), {"reduction": "avg"}, "reduction must be one of"),
    (lambda x, t: (x.long(), t), {}, "input must have dtype"),
]


@pytest.mark.parametrize("make,kwargs,match", BAD)
def test_bad_inputs(make, kwargs, match):
    logits, target = torch.randn(7, 9), torch.randint(0, 9, (7,))
    logits, target = logits[:6], target[:6]
    with pytest.raises(ValueError, match=match):
        llmkernels.cross_entropy(*make(logits, target), **kwargs)
