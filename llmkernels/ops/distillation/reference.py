"""Distillation losses in plain PyTorch: the specification (float32 math, float64 when given float64).

Per row, with c the optional softcap (softcap * tanh(x / softcap)) applied to both models' logits
wherever they are used, T the temperature and V = min(V_student, V_teacher):

* p_s = softmax(c(student)[:V] / T), p_t = softmax(c(teacher)[:V] / T): a narrower table pads
  nothing; both distributions are normalised over the shared first V columns.
* soft = D_beta(p_t, p_s), times T^2 when ``scale_by_temperature`` (Hinton: the gradient's scale
  then does not depend on T), with
  beta = 0: KL(p_t || p_s) (forward KL);  beta = 1: KL(p_s || p_t) (reverse KL);
  0 < beta < 1: beta * KL(p_t || m) + (1 - beta) * KL(p_s || m), m = beta * p_t + (1 - beta) * p_s
  (the generalised Jensen-Shannon divergence of TRL's ``generalized_jsd_loss`` and the GKD paper;
  it tends to 0 at both ends, where beta = 0 / 1 give the full KLs instead).
* hard = cross_entropy(c(student), target) at temperature 1 over the student's full row.
* row = (1 - hard_weight) * soft + hard_weight * hard; rows whose target is ``ignore_index`` take
  part in neither part (their row is 0). 'mean' divides by the number of rows that take part (all
  rows without a target; a mean over none is 0), 'sum' adds, 'none' keeps the rows.

Top-k (a teacher stored as its k best log-probabilities at temperature T): the divergence runs over
k + 1 buckets, the teacher's k tokens and a tail bucket with the rest of each distribution's mass.
The teacher's tail is max(2^-126, 1 - sum(exp(logprobs))): float32's smallest normal number, not 0,
so that a teacher whose stored mass rounds to 1 still gives a finite reverse KL (the tail then
costs the student q_tail * (log q_tail + 87.3)); the student's is its exact mass outside the
k ids. With k = V_student there is no tail bucket. ``temperature``/``softcap`` act on the student
only there: the stored log-probabilities are used as given.

0 * log 0 counts as 0 throughout. Gradients flow to the student only; ``distillation_grad`` and
``topk_grad`` state them in closed form (tests hold them to autograd through an independent
statement).
"""

from __future__ import annotations

import math

import torch


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def capped(x: torch.Tensor, softcap) -> torch.Tensor:
    x = x.to(_compute_dtype(x))
    return softcap * torch.tanh(x / softcap) if softcap else x


def _weighted_log_ratio(p, log_p, log_other):
    """sum_b p_b (log_p_b - log_other_b) over the last dim, with 0 * log 0 = 0."""
    present = p > 0
    ratio = torch.where(present, log_p - log_other, torch.zeros_like(p))
    return (p * ratio).sum(-1)


def divergence(log_q, log_r, beta: float):
    """D_beta between student log-probs log_q and teacher log-probs log_r over the last dim."""
    q, r = log_q.exp(), log_r.exp()
    if beta == 0.0:
        return _weighted_log_ratio(r, log_r, log_q)
    if beta == 1.0:
        return _weighted_log_ratio(q, log_q, log_r)
    log_m = torch.logaddexp(log_r + math.log(beta), log_q + math.log1p(-beta))
    return beta * _weighted_log_ratio(r, log_r, log_m) + (1.0 - beta) * _weighted_log_ratio(q, log_q, log_m)


def _valid_rows(target, ignore_index, rows, device):
    if target is None:
        return torch.ones(rows, dtype=torch.bool, device=device)
    return target != ignore_index


def _hard_rows(z_student, target, valid):
    if target is None:
        return torch.zeros(z_student.shape[0], dtype=z_student.dtype, device=z_student.device)
    safe = torch.where(valid, target, torch.zeros_like(target)).long()
    # -log_softmax, not lse - z_t: lse rounded at |lse| ~ 1e4 is off by ~1e-3, and at float32's
    # limits lse - z_t absorbs the whole loss (-3.4e38 + log(V) == -3.4e38)
    return -torch.log_softmax(z_student, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)


def _finish(soft, hard, valid, scale_factor):
    soft = torch.where(valid, soft * scale_factor, torch.zeros_like(soft))
    hard = torch.where(valid, hard, torch.zeros_like(hard))
    return soft, hard, valid


def distillation_rows(student, teacher, target, temperature, beta, ignore_index, scale_by_temperature, softcap):
    """(soft, hard, valid) per row for logits (N, Vs), (N, Vt) and target (N,) or None."""
    z_s, z_t = capped(student, softcap), capped(teacher, softcap).to(_compute_dtype(student))
    width = min(z_s.shape[-1], z_t.shape[-1])
    log_q = torch.log_softmax(z_s[:, :width] / temperature, dim=-1)
    log_r = torch.log_softmax(z_t[:, :width] / temperature, dim=-1)
    valid = _valid_rows(target, ignore_index, z_s.shape[0], z_s.device)
    soft = divergence(log_q, log_r, beta)
    factor = temperature * temperature if scale_by_temperature else 1.0
    return _finish(soft, _hard_rows(z_s, target, valid), valid, factor)


# The teacher's tail mass never goes below float32's smallest normal number (see the docstring).
TEACHER_TAIL_FLOOR = 2.0 ** -126


def _topk_buckets(z_s, teacher_ids, teacher_logprobs, temperature):
    """(log_p (N, Vs), log_q (N, B), log_r (N, B)): the student's log-probs and both bucket
    distributions, B = k (+ 1 tail bucket when k < Vs)."""
    log_p = torch.log_softmax(z_s / temperature, dim=-1)
    ids = teacher_ids.long()
    log_q = log_p.gather(-1, ids)
    log_r = teacher_logprobs.to(log_p.dtype)
    if ids.shape[-1] < z_s.shape[-1]:
        chosen = torch.zeros_like(log_p, dtype=torch.bool).scatter_(-1, ids, True)
        log_q_tail = torch.logsumexp(log_p.masked_fill(chosen, float("-inf")), dim=-1, keepdim=True)
        r_tail = (1.0 - log_r.exp().sum(-1, keepdim=True)).clamp_min(TEACHER_TAIL_FLOOR)
        log_q = torch.cat([log_q, log_q_tail], dim=-1)
        log_r = torch.cat([log_r, torch.log(r_tail)], dim=-1)
    return log_p, log_q, log_r


def topk_rows(student, teacher_ids, teacher_logprobs, target, temperature, beta, ignore_index, scale_by_temperature, softcap):
    """(soft, hard, valid) per row against a stored top-k teacher (ids (N, k), logprobs (N, k))."""
    z_s = capped(student, softcap)
    _, log_q, log_r = _topk_buckets(z_s, teacher_ids, teacher_logprobs, temperature)
    valid = _valid_rows(target, ignore_index, z_s.shape[0], z_s.device)
    soft = divergence(log_q, log_r, beta)
    factor = temperature * temperature if scale_by_temperature else 1.0
    return _finish(soft, _hard_rows(z_s, target, valid), valid, factor)


def combine(soft, hard, valid, hard_weight, reduction):
    """(loss, soft part, hard part), each reduced the same way."""
    rows = (1.0 - hard_weight) * soft + hard_weight * hard
    if reduction == "none":
        return rows, soft, hard
    if reduction == "sum":
        return rows.sum(), soft.sum(), hard.sum()
    count = valid.sum().clamp_min(1).to(rows.dtype)
    return rows.sum() / count, soft.sum() / count, hard.sum() / count


# ---- gradients, in closed form: an op's implementation runs below autograd ----------------------
# For buckets b with student masses q_b, teacher masses r_b and G_b = dD/dq_b, the gradient of D
# w.r.t. the student's scaled logit of column i (in bucket b) is p_i (G_b - sum_b' q_b' G_b'):
#   forward KL: G_b = -r_b / q_b          -> p_i R - r_b for a singleton (R = sum_b r_b);
#   reverse KL: G_b = log q_b - log r_b + 1 -> p_i (log q_b - log r_b - KL(q || r));
#   generalised JSD: G_b = (1 - beta)(log q_b - log m_b) -> (1 - beta) p_i (log q_b - log m_b - KL(q || m)).


def _bucket_slopes(log_q, log_r, beta):
    """h_b = G_b - sum q G per bucket (reverse KL / JSD), and the forward KL's R."""
    q = log_q.exp()
    if beta == 0.0:
        return None, log_r.exp().sum(-1, keepdim=True)
    log_m = log_r if beta == 1.0 else torch.logaddexp(log_r + math.log(beta), log_q + math.log1p(-beta))
    kl = _weighted_log_ratio(q, log_q, log_m).unsqueeze(-1)
    return (1.0 if beta == 1.0 else 1.0 - beta) * (log_q - log_m - kl), None


def _times(p, h):
    return torch.where(p > 0, p * h, torch.zeros_like(p))  # 0 * inf (a column of zero mass) is 0


def _finish_grad(soft_grad, z_s, student, target, valid, temperature, hard_weight, scale_by_temperature, softcap):
    """(1 - hw) * factor / T * soft_grad + hw * d hard, masked to valid rows, through the softcap."""
    factor = temperature * temperature if scale_by_temperature else 1.0
    grad = soft_grad * ((1.0 - hard_weight) * factor / temperature)
    if target is not None and hard_weight:
        safe = torch.where(valid, target, torch.zeros_like(target)).long()
        onehot = torch.nn.functional.one_hot(safe, z_s.shape[-1]).to(z_s.dtype)
        grad = grad + hard_weight * (torch.softmax(z_s, dim=-1) - onehot)
    grad = grad * valid.unsqueeze(-1).to(grad.dtype)
    if softcap:
        grad = grad * (1.0 - (z_s / softcap).square())
    return grad


def distillation_grad(student, teacher, target, temperature, beta, hard_weight, ignore_index, scale_by_temperature,
                      softcap):
    """d sum_rows((1 - hard_weight) * soft + hard_weight * hard) / d student, compute dtype."""
    z_s, z_t = capped(student, softcap), capped(teacher, softcap).to(_compute_dtype(student))
    width = min(z_s.shape[-1], z_t.shape[-1])
    log_q = torch.log_softmax(z_s[:, :width] / temperature, dim=-1)
    log_r = torch.log_softmax(z_t[:, :width] / temperature, dim=-1)
    slopes, mass = _bucket_slopes(log_q, log_r, beta)
    q = log_q.exp()
    soft = q * mass - log_r.exp() if slopes is None else _times(q, slopes)
    soft_grad = torch.nn.functional.pad(soft, (0, z_s.shape[-1] - width))
    valid = _valid_rows(target, ignore_index, z_s.shape[0], z_s.device)
    return _finish_grad(soft_grad, z_s, student, target, valid, temperature, hard_weight, scale_by_temperature, softcap)


def topk_grad(student, teacher_ids, teacher_logprobs, target, temperature, beta, hard_weight, ignore_index,
              scale_by_temperature, softcap):
    """As ``distillation_grad`` against a stored top-k teacher."""
    z_s = capped(student, softcap)
    log_p, log_q, log_r = _topk_buckets(z_s, teacher_ids, teacher_logprobs, temperature)
    ids, k = teacher_ids.long(), teacher_ids.shape[-1]
    p = log_p.exp()
    slopes, mass = _bucket_slopes(log_q, log_r, beta)
    has_tail = k < z_s.shape[-1]
    if slopes is None:  # forward KL: the tail's slope R - r / q, each singleton p R - r
        tail = mass - torch.exp(log_r[:, k:] - log_q[:, k:]) if has_tail else None
        singles = p.gather(-1, ids) * mass - log_r[:, :k].exp()
    else:
        tail = slopes[:, k:] if has_tail else None
        singles = _times(p.gather(-1, ids), slopes[:, :k])
    soft_grad = _times(p, tail) if has_tail else torch.zeros_like(p)
    soft_grad = soft_grad.scatter(-1, ids, singles)
    valid = _valid_rows(target, ignore_index, z_s.shape[0], z_s.device)
    return _finish_grad(soft_grad, z_s, student, target, valid, temperature, hard_weight, scale_by_temperature, softcap)


def rows_with_gradient(rows_fn, grad_fn, student, grad_scale, want_grad):
    """The kernels' row contract in plain PyTorch: (soft, hard) per row (float32, float64 for a
    float64 student) and, when
    ``want_grad``, grad_scale * d((1 - hard_weight) * soft + hard_weight * hard).sum() / d student
    in the student's dtype. ``rows_fn(student)`` / ``grad_fn(student)`` are the functions above
    with the other arguments bound."""
    soft, hard, _ = rows_fn(student)
    if not want_grad:
        return soft, hard, None
    return soft, hard, (grad_fn(student) * grad_scale).to(student.dtype)


def topk_logprobs(logits, k: int, temperature: float, softcap):
    """(ids (N, k) int32, logprobs (N, k) float32): the k most likely tokens of
    softmax(c(logits) / T), most likely first."""
    log_p = torch.log_softmax(capped(logits, softcap) / temperature, dim=-1)
    values, ids = torch.topk(log_p, k, dim=-1)
    return ids.to(torch.int32), values.float()
