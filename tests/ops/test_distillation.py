"""Distillation losses: the reference against an independent float64 statement (torch.distributions,
one row at a time), the invariants of the issue, bad inputs, opcheck and compile."""

import math

import pytest
import torch
from torch.distributions import Categorical, kl_divergence

import llmkernels
from tests.helpers import TOLERANCES


def _cap(x, softcap):
    return softcap * torch.tanh(x / softcap) if softcap else x


def _divergence(p_s: Categorical, p_t: Categorical, beta):
    if beta == 0:
        return kl_divergence(p_t, p_s)
    if beta == 1:
        return kl_divergence(p_s, p_t)
    m = Categorical(probs=beta * p_t.probs + (1 - beta) * p_s.probs)
    return beta * kl_divergence(p_t, m) + (1 - beta) * kl_divergence(p_s, m)


def _reduce(rows, target, ignore_index, reduction):
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    count = rows.shape[0] if target is None else int((target != ignore_index).sum())
    return rows.sum() / max(count, 1)


def naive_loss(student, teacher, target, *, temperature=1.0, beta=0.0, hard_weight=0.0, ignore_index=-100,
               reduction="mean", scale_by_temperature=True, softcap=None):
    """The issue's statement, row by row in float64 (differentiable w.r.t. student)."""
    rows = []
    width = min(student.shape[-1], teacher.shape[-1])
    for i in range(student.shape[0]):
        if target is not None and int(target[i]) == ignore_index:
            rows.append(student[i].sum() * 0.0)  # 0, yet in the graph: an all-ignored batch has zero gradient
            continue
        s, t = _cap(student[i].double(), softcap), _cap(teacher[i].double(), softcap)
        p_s = Categorical(logits=s[:width] / temperature)
        p_t = Categorical(logits=t[:width] / temperature)
        soft = _divergence(p_s, p_t, beta) * (temperature**2 if scale_by_temperature else 1.0)
        hard = -Categorical(logits=s).log_prob(target[i]) if target is not None else 0.0
        rows.append((1 - hard_weight) * soft + hard_weight * hard)
    rows = torch.stack(rows) if rows else student.new_zeros(0, dtype=torch.float64)
    return _reduce(rows, target, ignore_index, reduction)


def _plogp(p, other):
    """sum p log(p / other), 0 log 0 = 0; the teacher's masses as given (not renormalised)."""
    return torch.where(p > 0, p * (p.log() - other.log()), torch.zeros_like(p)).sum()


def _bucket_divergence(q, r, beta):
    if beta == 0:
        return _plogp(r, q)
    if beta == 1:
        return _plogp(q, r)
    m = beta * r + (1 - beta) * q
    return beta * _plogp(r, m) + (1 - beta) * _plogp(q, m)


def naive_topk_loss(student, ids, logprobs, target, *, temperature=1.0, beta=0.0, hard_weight=0.0,
                    ignore_index=-100, reduction="mean", scale_by_temperature=True, softcap=None):
    """k + 1 buckets built by hand: the teacher's tail is max(0, 1 - sum exp(logprobs))."""
    rows = []
    for i in range(student.shape[0]):
        if target is not None and int(target[i]) == ignore_index:
            rows.append(student[i].sum() * 0.0)  # 0, yet in the graph: an all-ignored batch has zero gradient
            continue
        s = _cap(student[i].double(), softcap)
        q = torch.softmax(s / temperature, -1)
        chosen = ids[i].long()
        q_b, r_b = q[chosen], logprobs[i].double().exp()
        if chosen.numel() < s.numel():
            rest = torch.ones_like(q, dtype=torch.bool)
            rest[chosen] = False
            q_b = torch.cat([q_b, q[rest].sum().reshape(1)])
            r_b = torch.cat([r_b, (1 - r_b.sum()).clamp_min(0).reshape(1)])
        soft = _bucket_divergence(q_b, r_b, beta)
        soft = soft * (temperature**2 if scale_by_temperature else 1.0)
        hard = -Categorical(logits=s).log_prob(target[i]) if target is not None else 0.0
        rows.append((1 - hard_weight) * soft + hard_weight * hard)
    return _reduce(torch.stack(rows), target, ignore_index, reduction)


def _problem(rows, v_s, v_t, dtype=torch.float64, spread=3.0):
    student = (torch.randn(rows, v_s) * spread).to(dtype)
    teacher = (torch.randn(rows, v_t) * spread).to(dtype)
    target = torch.randint(0, v_s, (rows,))
    target[torch.rand(rows) < 0.25] = -100
    return student, teacher, target


def _close(actual, expected, dtype=torch.float64):
    torch.testing.assert_close(actual.double(), expected.double(), **TOLERANCES[dtype])


@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 2.5])
@pytest.mark.parametrize("hard_weight,softcap", [(0.0, None), (0.4, 5.0)])
@pytest.mark.parametrize("widths", [(37, 37), (41, 33), (29, 35)], ids=["same", "student-wider", "teacher-wider"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reference_matches_naive_statement(beta, temperature, hard_weight, softcap, widths, reduction):
    student, teacher, target = _problem(7, *widths)
    options = dict(temperature=temperature, beta=beta, hard_weight=hard_weight, reduction=reduction, softcap=softcap)
    leaf = student.clone().requires_grad_(True)
    with llmkernels.use_backend("reference"):
        loss = llmkernels.distillation_loss(leaf, teacher, target, **options)
    naive_leaf = student.clone().requires_grad_(True)
    expected = naive_loss(naive_leaf, teacher, target, **options)
    _close(loss, expected)
    upstream = torch.randn_like(expected)
    _close(torch.autograd.grad(loss, leaf, upstream)[0], torch.autograd.grad(expected, naive_leaf, upstream)[0])


def test_no_target_means_every_row_and_return_parts():
    student, teacher, target = _problem(5, 20, 20)
    with llmkernels.use_backend("reference"):
        loss = llmkernels.distillation_loss(student, teacher, temperature=2.0)
        full, soft, hard = llmkernels.distillation_loss(student, teacher, target, hard_weight=0.25, return_parts=True)
    _close(loss, naive_loss(student, teacher, None, temperature=2.0))
    _close(full, 0.75 * soft + 0.25 * hard)
    _close(soft, naive_loss(student, teacher, target))
    assert not soft.requires_grad and not hard.requires_grad


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("temperature", [0.05, 1.0, 4.0])
def test_identical_models_give_zero_loss_and_zero_grad(beta, temperature):
    logits = torch.randn(6, 50, dtype=torch.float64) * 4
    leaf = logits.clone().requires_grad_(True)
    with llmkernels.use_backend("reference"):
        loss = llmkernels.distillation_loss(leaf, logits, temperature=temperature, beta=beta)
    (grad,) = torch.autograd.grad(loss, leaf)
    assert abs(float(loss.detach())) < 1e-12 and float(grad.abs().max()) < 1e-12


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_extreme_logits_and_tiny_temperature_stay_finite(beta):
    student = torch.full((4, 64), -1e4)
    student[:, ::3] = 1e4
    teacher = torch.flip(student, (-1,))
    target = torch.tensor([0, 5, -100, 63])
    for temperature in (1e-4, 1.0):
        leaf = student.clone().requires_grad_(True)
        with llmkernels.use_backend("reference"):
            loss = llmkernels.distillation_loss(leaf, teacher, target, temperature=temperature, beta=beta, hard_weight=0.5)
        (grad,) = torch.autograd.grad(loss, leaf)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("k", [1, 5, 30])
def test_topk_reference_matches_naive_buckets(beta, k):
    student, teacher, target = _problem(6, 30, 30)
    ids, logprobs = llmkernels.topk_logprobs(teacher, k, temperature=2.0, softcap=4.0)
    assert ids.dtype == torch.int32 and logprobs.dtype == torch.float32 and ids.shape == (6, k)
    options = dict(temperature=2.0, beta=beta, hard_weight=0.3, softcap=4.0)
    leaf = student.clone().requires_grad_(True)
    with llmkernels.use_backend("reference"):
        loss = llmkernels.topk_distillation_loss(leaf, ids, logprobs, target, **options)
    naive_leaf = student.clone().requires_grad_(True)
    expected = naive_topk_loss(naive_leaf, ids, logprobs, target, **options)
    _close(loss, expected)
    _close(torch.autograd.grad(loss, leaf)[0], torch.autograd.grad(expected, naive_leaf)[0])


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_topk_with_k_equal_to_vocab_is_the_full_loss(beta):
    student, teacher, target = _problem(5, 24, 24)
    ids, logprobs = llmkernels.topk_logprobs(teacher.double(), 24, temperature=1.5)
    options = dict(temperature=1.5, beta=beta, hard_weight=0.2)
    full = llmkernels.distillation_loss(student, teacher, target, **options)
    topk = llmkernels.topk_distillation_loss(student, ids.long(), logprobs.double(), target, **options)
    torch.testing.assert_close(topk, full, **TOLERANCES[torch.float32])


def test_topk_logprobs_are_the_best_tokens():
    logits = torch.randn(3, 4, 40)
    ids, logprobs = llmkernels.topk_logprobs(logits, 6, temperature=0.7)
    assert ids.shape == (3, 4, 6)
    full = torch.log_softmax(logits / 0.7, -1)
    torch.testing.assert_close(logprobs, full.topk(6, -1).values)
    torch.testing.assert_close(full.gather(-1, ids.long()), logprobs)


def _bad(**changes):
    student, teacher, target = _problem(4, 10, 10, torch.float32)
    args = dict(student_logits=student, teacher_logits=teacher, target=target)
    args.update(changes)
    return args


@pytest.mark.parametrize("args,kwargs,match", [
    (dict(teacher_logits=torch.randn(5, 10)), {}, "teacher_logits"),
    ({}, dict(temperature=0.0), "temperature"),
    ({}, dict(temperature=-1.0), "temperature"),
    ({}, dict(temperature=math.inf), "temperature"),
    ({}, dict(temperature=math.nan), "temperature"),
    ({}, dict(beta=-0.1), "beta"),
    ({}, dict(beta=1.5), "beta"),
    ({}, dict(hard_weight=1.5), "hard_weight"),
    (dict(target=None), dict(hard_weight=0.5), "hard_weight"),
    (dict(target=torch.tensor([0, 1, 2, 10])), {}, "target"),
    ({}, dict(reduction="batchmean"), "reduction"),
])
def test_bad_inputs_name_the_argument(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        llmkernels.distillation_loss(**_bad(**args), **kwargs)


@pytest.mark.parametrize("ids,logprobs,match", [
    (torch.tensor([[0, 12]] * 4), torch.full((4, 2), -1.0), "teacher_ids"),
    (torch.tensor([[0, -1]] * 4), torch.full((4, 2), -1.0), "teacher_ids"),
    (torch.tensor([[3, 3]] * 4), torch.full((4, 2), -1.0), "teacher_ids"),
    (torch.tensor([[0, 1]] * 3), torch.full((3, 2), -1.0), "teacher_ids"),
    (torch.tensor([[0, 1]] * 4), torch.full((4, 2), 0.5), "teacher_logprobs"),
    (torch.tensor([[0, 1]] * 4), torch.full((4, 2), math.nan), "teacher_logprobs"),
    (torch.arange(11).repeat(4, 1), torch.full((4, 11), -3.0), "k must"),
])
def test_topk_bad_inputs_name_the_argument(ids, logprobs, match):
    with pytest.raises(ValueError, match=match):
        llmkernels.topk_distillation_loss(torch.randn(4, 10), ids, logprobs)


@pytest.mark.parametrize("k", [0, 11])
def test_topk_logprobs_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k must"):
        llmkernels.topk_logprobs(torch.randn(4, 10), k)


def test_opcheck():
    ops = torch.ops.llmkernels
    student, teacher, target = _problem(6, 12, 10, torch.float32)
    student.requires_grad_(True)
    for reduction in ("mean", "none"):
        torch.library.opcheck(ops.distillation_loss, (student, teacher, target, 2.0, 0.5, 0.3, -100, reduction, True, 3.0, True, "auto"))
    torch.library.opcheck(ops.distillation_loss_backward, (torch.tensor(0.5), student.detach(), teacher, target, student.new_empty(0), 2.0, 0.5, 0.3, -100, "mean", True, None, "auto"))
    ids, logprobs = llmkernels.topk_logprobs(teacher, 4)
    torch.library.opcheck(ops.topk_logprobs, (teacher, 4, 1.0, None, "auto"))
    torch.library.opcheck(ops.topk_distillation_loss, (student, ids, logprobs, target, 2.0, 0.0, 0.3, -100, "sum", True, None, True, "auto"))
    torch.library.opcheck(ops.topk_distillation_loss_backward, (torch.tensor(2.0), student.detach(), ids, logprobs, target, student.new_empty(0), 2.0, 0.0, 0.3, -100, "sum", True, None, "auto"))


@pytest.mark.parametrize("compiler", ["aot_eager", "inductor"])
def test_compile_fullgraph(compiler):
    student, teacher, target = _problem(9, 16, 16, torch.float32)
    ids, logprobs = llmkernels.topk_logprobs(teacher, 5, temperature=2.0)

    def step(s, t):
        full = llmkernels.distillation_loss(s * 1.5, t, target, temperature=2.0, beta=0.5, hard_weight=0.1)
        return full + llmkernels.topk_distillation_loss(s, ids, logprobs, target, temperature=2.0)

    leaf = student.clone().requires_grad_(True)
    loss = torch.compile(step, fullgraph=True, backend=compiler)(leaf, teacher)
    (grad,) = torch.autograd.grad(loss, leaf)
    eager_leaf = student.clone().requires_grad_(True)
    expected = step(eager_leaf, teacher)
    (expected_grad,) = torch.autograd.grad(expected, eager_leaf)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad, expected_grad)


def test_teacher_gets_no_gradient_and_modules_match_torch():
    student, teacher, target = _problem(6, 16, 16, torch.float32)
    teacher.requires_grad_(True)
    loss = llmkernels.distillation_loss(student.requires_grad_(True), teacher, target, beta=0.5, hard_weight=0.5)
    loss.backward()
    assert teacher.grad is None and student.grad is not None
    for ops_loss in (llmkernels.nn.DistillationLoss(temperature=2.0, beta=0.2), llmkernels.nn.DistillationLoss(temperature=2.0, beta=0.2, ops="torch")):
        torch.testing.assert_close(ops_loss(student, teacher, target), llmkernels.distillation_loss(student, teacher, target, temperature=2.0, beta=0.2))
