"""Extreme values: logits of +-1e4 and at float32's limits, scores that overflow fp16, fully
masked rows, all targets ignored, a temperature near 0, sequence length 1, an empty batch and huge
position ids. Each gives finite results equal to float64 math (or the true overflow, inf, where
float32 cannot hold the answer), or a clear error, in bounded time."""

import pytest
import torch
import torch.nn.functional as F

import llmkernels
from tests.helpers import TOLERANCES, assert_close, assert_close_scaled, skip_unless_present

pytestmark = pytest.mark.timeout(120)  # bounded time: a case that runs away fails instead of hanging CI
F32 = torch.finfo(torch.float32)


def backends(op):
    return [b for b in ("reference", "cpp", "triton") if b in llmkernels.backends.implemented_backends(op)]


def _run(op, backend, fn, *leaves):
    """fn() on ``backend`` and the gradients of its (summed, weighted) outputs w.r.t. ``leaves``."""
    skip_unless_present(op, "cpu", backend, torch.float32)
    leaves = [t.detach().clone().requires_grad_() for t in leaves]
    with llmkernels.use_backend(backend):
        out = fn(*leaves)
    first = out[0] if isinstance(out, tuple) else out
    grads = torch.autograd.grad(_weighted(first), leaves) if first.requires_grad else ()
    return out, grads


def _weighted(out):
    """A fixed weighted sum of ``out`` (so each element's gradient is checked at its place)."""
    return (out.double() * torch.linspace(0.5, 1.5, out.numel(), dtype=torch.float64).reshape(out.shape)).sum()


LARGE = torch.tensor([[1e4, -1e4, 0.0, 5.0], [-1e4, -1e4, -1e4, -1e4], [1e4, 1e4 - 1, 1e4 - 2, -1e4]])


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("backend", backends("cross_entropy"))
def test_cross_entropy_of_logits_of_plus_minus_1e4(backend, label_smoothing):
    # The all -1e4 row lost four digits in the reference (lse - z_t at |lse| ~ 1e4 in float32).
    target = torch.tensor([1, 2, 0])
    (loss, grads) = _run("cross_entropy", backend, lambda x: llmkernels.cross_entropy(
        x, target, reduction="none", label_smoothing=label_smoothing), LARGE)
    x64 = LARGE.double().requires_grad_()
    expected = F.cross_entropy(x64, target, reduction="none", label_smoothing=label_smoothing)
    assert_close(loss, expected)
    (expected_grad,) = torch.autograd.grad(_weighted(expected), x64)
    assert_close(grads[0], expected_grad, torch.float32)


@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1}, {"z_loss": 1e-4}, {"softcap": 30.0}], ids=str)
@pytest.mark.parametrize("backend", backends("cross_entropy"))
def test_cross_entropy_at_the_limits_of_float32(backend, options):
    # Losses past float32's range are its true overflow, inf, never inf - inf = NaN; the rest (and
    # every gradient, a difference of probabilities) is finite and equal to float64 math.
    logits = torch.tensor([[F32.max, -F32.max, 0.0], [F32.max, F32.max, -F32.max], [F32.tiny, -F32.tiny, 1e-45]])
    target = torch.tensor([1, 2, 0])
    loss, grads = _run("cross_entropy", backend, lambda x: llmkernels.cross_entropy(x, target, reduction="none", **options), logits)
    assert not loss.isnan().any() and bool(torch.isfinite(grads[0]).all())
    if options.get("softcap"):
        assert torch.isfinite(loss).all()
        return
    expected = F.cross_entropy(logits.double(), target, reduction="none", label_smoothing=options.get("label_smoothing", 0.0))
    expected = expected + options.get("z_loss", 0.0) * torch.logsumexp(logits.double(), -1).square()
    overflow = expected > F32.max
    assert torch.equal(torch.isinf(loss), overflow)
    assert_close(loss[~overflow], expected[~overflow])


@pytest.mark.parametrize("backend", backends("attention"))
def test_attention_scores_that_overflow_fp16(backend):
    # q.k ~ 2e5 > fp16's 65504: the scores are held in float32.
    dtype = torch.float16
    q = torch.full((1, 2, 3, 16), 100.0) * torch.tensor([1.0, -1.0, 0.5]).view(1, 1, 3, 1)
    k = torch.full((1, 2, 4, 16), 120.0) * torch.tensor([1.0, 0.9, -1.0, 0.2]).view(1, 1, 4, 1)
    v = torch.randn(1, 2, 4, 16)
    (out, lse), grads = _run("attention", backend, lambda a, b, c: llmkernels.attention(a, b, c, scale=1.0, return_lse=True),
                             q.to(dtype), k.to(dtype), v.to(dtype))
    expected, expected_lse = llmkernels.attention(q.double(), k.double(), v.to(dtype).double(), scale=1.0, return_lse=True)
    assert torch.isfinite(out).all() and torch.isfinite(lse).all() and all(torch.isfinite(g).all() for g in grads)
    assert_close(out, expected, dtype)
    torch.testing.assert_close(lse.double(), expected_lse.double(), **TOLERANCES[torch.float32])


@pytest.mark.parametrize("backend", backends("attention"))
def test_attention_rows_that_see_no_key(backend):
    # Batch 0's keys are all padding, and with causal Sq > Sk the first query rows see no key:
    # zeros (lse -inf), and zero gradients, never NaN.
    q, k, v = torch.randn(2, 2, 5, 16), torch.randn(2, 2, 3, 16), torch.randn(2, 2, 3, 16)
    mask = torch.tensor([[False] * 3, [True] * 3])
    (out, lse), grads = _run("attention", backend, lambda a, b, c: llmkernels.attention(
        a, b, c, causal=True, key_padding_mask=mask, return_lse=True), q, k, v)
    seen = torch.zeros(2, 1, 5, dtype=torch.bool)
    seen[1, 0, 2:] = True  # batch 1: query i sees keys j <= i - 2
    assert torch.equal(out[~seen.expand(2, 2, 5)], torch.zeros_like(out[~seen.expand(2, 2, 5)]))
    assert torch.equal(torch.isinf(lse), ~seen.expand(2, 2, 5)) and (lse[torch.isinf(lse)] < 0).all()
    assert all(torch.isfinite(g).all() for g in grads)
    assert torch.equal(grads[0][0], torch.zeros_like(grads[0][0])) and torch.equal(grads[1][0], torch.zeros_like(grads[1][0]))
    expected = llmkernels.attention(q.double(), k.double(), v.double(), causal=True, key_padding_mask=mask)
    assert_close(out, expected, torch.float32)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("op", ["cross_entropy", "linear_cross_entropy", "distillation_loss"])
def test_all_targets_ignored(op, reduction):
    # A mean over no rows is 0 (torch's NaN is not kept), and nothing flows back.
    for backend in backends(op):
        x, w, teacher = torch.randn(4, 6), torch.randn(9, 6), torch.randn(4, 9)
        target = torch.full((4,), -100)
        calls = {
            "cross_entropy": (lambda a: llmkernels.cross_entropy(a, target, reduction=reduction, label_smoothing=0.1), (teacher,)),
            "linear_cross_entropy": (lambda a, b: llmkernels.linear_cross_entropy(a, b, target, reduction=reduction), (x, w)),
            "distillation_loss": (lambda a: llmkernels.distillation_loss(a, teacher, target, hard_weight=0.5, reduction=reduction),
                                  (torch.randn(4, 9),)),
        }
        fn, leaves = calls[op]
        loss, grads = _run(op, backend, fn, *leaves)
        assert torch.equal(loss, torch.zeros_like(loss)), backend
        assert all(torch.equal(g, torch.zeros_like(g)) for g in grads), backend


@pytest.mark.parametrize("temperature", [1e-2, 1e-4, 1e-8, 1e-30])
@pytest.mark.parametrize("backend", backends("distillation_loss"))
def test_distillation_at_a_temperature_near_zero(backend, temperature):
    student, teacher, target = torch.randn(3, 7) * 100, torch.randn(3, 7) * 100, torch.tensor([1, 2, 3])
    for beta in (0.0, 0.5, 1.0):
        call = lambda s: llmkernels.distillation_loss(s, teacher, target, temperature=temperature, beta=beta, hard_weight=0.5)  # noqa: E731
        loss, grads = _run("distillation_loss", backend, call, student)
        s64 = student.double().requires_grad_()
        with llmkernels.use_backend("reference"):
            expected = llmkernels.distillation_loss(s64, teacher.double(), target, temperature=temperature, beta=beta, hard_weight=0.5)
        assert torch.isfinite(loss) and torch.isfinite(grads[0]).all(), beta
        assert_close(loss, expected)
        assert_close_scaled(grads[0], torch.autograd.grad(_weighted(expected), s64)[0], torch.float32)


@pytest.mark.parametrize("temperature", [1e-31, 1e-45])
def test_a_temperature_whose_logits_overflow_is_refused(temperature):
    # Logits of 100 / 1e-37 overflow float32: every backend returned NaN or inf.
    student, teacher = torch.randn(3, 7), torch.randn(3, 7)
    for call in (lambda: llmkernels.distillation_loss(student, teacher, temperature=temperature),
                 lambda: llmkernels.topk_logprobs(teacher, 2, temperature=temperature)):
        with pytest.raises(ValueError, match="temperature must be a finite number >= 1e-30"):
            call()


@pytest.mark.parametrize("backend", ["reference", "cpp", "triton"])
def test_sequence_length_one_and_an_empty_batch(backend):
    for batch, seq in ((1, 1), (0, 4)):
        q, k, v = torch.randn(batch, 2, seq, 16), torch.randn(batch, 1, seq, 16), torch.randn(batch, 1, seq, 16)
        cos, sin = llmkernels.rope_cache(8, 16)
        x = torch.randn(batch, seq, 16)
        cases = {
            "attention": (lambda a, b, c: llmkernels.attention(a, b, c, causal=True), (q, k, v),
                          lambda a, b, c: llmkernels.attention(a, b, c, causal=True)),
            "apply_rotary": (lambda a, b: llmkernels.apply_rotary(a, b, cos, sin)[0], (q, k), None),
            "add_sinusoidal_position_encoding": (llmkernels.add_sinusoidal_position_encoding, (x,), None),
            "cross_entropy": (lambda a: llmkernels.cross_entropy(a, torch.zeros(batch * seq, dtype=torch.long)),
                              (x.reshape(-1, 16),), None),
        }
        for op, (fn, leaves, _) in cases.items():
            if backend not in backends(op):
                continue
            out, grads = _run(op, backend, fn, *leaves)
            with llmkernels.use_backend("reference"):
                expected = fn(*(t.double() for t in leaves))
            assert out.shape == expected.shape and torch.isfinite(out).all(), op
            assert_close(out, expected, torch.float32)
            assert all(g.shape == t.shape and torch.isfinite(g).all() for g, t in zip(grads, leaves)), op


@pytest.mark.parametrize("backend", backends("rotary_embedding"))
def test_huge_position_ids_are_refused_quickly(backend):
    # A position past the cos/sin cache is an error naming position_ids, before any work (no table
    # is built for it); the largest int32 / int64 ids included.
    skip_unless_present("rotary_embedding", "cpu", backend, torch.float32)
    x = torch.randn(1, 2, 3, 8)
    cos, sin = llmkernels.rope_cache(16, 8)
    with llmkernels.use_backend(backend):
        for ids in (torch.tensor([0, 1, 2**40]), torch.tensor([0, 1, 2**63 - 1]), torch.tensor([0, 1, 2**31 - 1], dtype=torch.int32)):
            with pytest.raises(ValueError, match=r"position_ids must lie in \[0, 16\)"):
                llmkernels.rotary_embedding(x, cos, sin, ids)
        # The last cached position of a long cache: finite and equal to the rotation in float64.
        cos, sin = llmkernels.rope_cache(2**17, 8)
        ids = torch.tensor([0, 2**17 - 2, 2**17 - 1])
        out = llmkernels.rotary_embedding(x, cos, sin, ids)
    with llmkernels.use_backend("reference"):
        expected = llmkernels.rotary_embedding(x.double(), cos, sin, ids)
    assert torch.isfinite(out).all()
    assert_close(out, expected, torch.float32)


STUDENT = torch.tensor([[1e4, -1e4, 0.0, 5.0], [-1e4, -1e4, -1e4, -1e4], [1e4, 1e4 - 1, 1e4 - 2, -1e4]])
TEACHER = torch.tensor([[1e4 - 3, -1e4, 2.0, 5.0], [-1e4, -1e4 + 1, -1e4, -1e4], [-1e4, 1e4, 1e4 - 2, -1e4]])


def _distillation(backend, student, teacher, beta):
    target = torch.tensor([1, 2, 0])
    call = lambda s: llmkernels.distillation_loss(s, teacher, target, beta=beta, hard_weight=0.3, reduction="none")  # noqa: E731
    loss, grads = _run("distillation_loss", backend, call, student)
    s64 = student.double().requires_grad_()
    with llmkernels.use_backend("reference"):
        expected = llmkernels.distillation_loss(s64, teacher.double(), target, beta=beta, hard_weight=0.3, reduction="none")
    return loss, grads, expected, s64


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("backend", backends("distillation_loss"))
def test_distillation_of_logits_of_plus_minus_1e4(backend, beta):
    # The reference's hard part was lse - z_t, which lost four digits at |lse| ~ 1e4.
    loss, grads, expected, s64 = _distillation(backend, STUDENT, TEACHER, beta)
    assert_close(loss, expected)
    assert_close_scaled(grads[0], torch.autograd.grad(_weighted(expected), s64)[0], torch.float32)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("backend", backends("distillation_loss"))
def test_distillation_at_the_limits_of_float32(backend, beta):
    # Row 1 (uniform student, one-hot teacher): with beta 0 both parts are log(4); the reference's
    # hard part was 0 (-3.4e38 + log 4 == -3.4e38). Rows whose loss overflows come back inf, never NaN.
    student, teacher = STUDENT / 1e4 * F32.max, TEACHER / 1e4 * F32.max
    loss, grads, expected, _ = _distillation(backend, student, teacher, beta)
    assert not loss.isnan().any()
    if beta == 0.0:
        assert_close(loss[1], torch.tensor(4.0).log().double())
    finite = torch.isfinite(loss)
    assert_close(loss[finite], expected[finite])
    assert (loss[~finite] > 0).all()


@pytest.mark.parametrize("op", ["cross_entropy", "distillation_loss", "topk_distillation_loss"])
def test_an_empty_batch_with_a_strided_last_dim(op):
    # Found by tests/property: an empty (0, C) view with a last-dim stride of 2 went to the C++
    # kernels unchanged (torch calls any empty tensor contiguous), which refused it.
    student, teacher = torch.randn(0, 8)[:, ::2], torch.randn(0, 6)[:, ::2]
    ids, logprobs = torch.zeros(0, 2, dtype=torch.long), torch.zeros(0, 2)
    calls = {
        "cross_entropy": lambda s: llmkernels.cross_entropy(s, torch.zeros(0, dtype=torch.long)),
        "distillation_loss": lambda s: llmkernels.distillation_loss(s, teacher),
        "topk_distillation_loss": lambda s: llmkernels.topk_distillation_loss(s, ids, logprobs),
    }
    for backend in backends(op):
        loss, grads = _run(op, backend, calls[op], student)
        assert torch.equal(loss, torch.zeros_like(loss)) and grads[0].shape == student.shape, backend
