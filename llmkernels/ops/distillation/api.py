"""Public distillation losses on logits, and the top-k teacher they can distil from."""

from __future__ import annotations

import torch

from llmkernels import backends
from llmkernels.ops.distillation.arguments import check_arguments, check_k, check_options, check_topk_arguments


def normalize_options(temperature, beta, hard_weight, softcap, ignore_index, reduction, target):
    """Floats for the op's schema (checked first, so a bad type names its argument)."""
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int; got {ignore_index!r}")
    softcap = None if softcap in (None, 0, 0.0) else float(softcap)
    check_options(temperature, beta, hard_weight, reduction, softcap, target is not None)
    return float(temperature), float(beta), float(hard_weight), softcap


def flatten_rows(name, logits, target):
    """(N, V) logits and (N,) target (or None) from (..., V) and (...), and the row shape."""
    if not isinstance(logits, torch.Tensor) or logits.dim() < 1:
        raise ValueError(f"{name} must be a tensor of shape (..., vocab); got {getattr(logits, 'shape', logits)!r}")
    row_shape = logits.shape[:-1]
    if target is not None:
        if not isinstance(target, torch.Tensor):
            raise TypeError(f"target must be a torch.Tensor or None; got {type(target).__name__}")
        if target.shape != row_shape:
            raise ValueError(f"target must have shape {tuple(row_shape)} ({name}'s leading dims); got {tuple(target.shape)}")
        target = target.reshape(-1)
    return logits.reshape(-1, logits.shape[-1]), target, row_shape


def wants_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def finish(outputs, reduction, row_shape, dtype, device_type, return_parts):
    """The loss in the input's dtype (float32 under autocast), reshaped for 'none'; parts detached."""
    loss, soft, hard = outputs[:3]
    if reduction == "none":
        loss, soft, hard = (t.reshape(row_shape) for t in (loss, soft, hard))
    if not torch.is_autocast_enabled(device_type):
        loss = loss.to(dtype)
    if return_parts:
        return loss, soft.detach(), hard.detach()
    return loss


def distillation_loss(
    student_logits, teacher_logits, target=None, *, temperature=1.0, beta=0.0, hard_weight=0.0, ignore_index=-100,
    reduction="mean", scale_by_temperature=True, softcap=None, return_parts=False,
):
    """Knowledge-distillation loss of student logits (..., Vs) against teacher logits (..., Vt).

    Soft part per row, between p_t = softmax(c(teacher) / T) and p_s = softmax(c(student) / T)
    (c the optional ``softcap``, on both models): ``beta = 0`` the forward KL(p_t || p_s), ``beta = 1``
    the reverse KL(p_s || p_t), ``0 < beta < 1`` the generalised Jensen-Shannon divergence
    beta * KL(p_t || m) + (1 - beta) * KL(p_s || m), m = beta * p_t + (1 - beta) * p_s (TRL's
    ``generalized_jsd_loss`` and GKD's convention: the interior tends to 0 at both ends, while
    beta = 0 / 1 give the full KLs). Times T^2 when ``scale_by_temperature``. With different
    widths, the soft part runs over the first min(Vs, Vt) columns, both distributions normalised
    there.

    Hard part (when ``target`` (...) is given): cross_entropy(c(student), target) at temperature 1
    over the student's full row. ``loss = (1 - hard_weight) * soft + hard_weight * hard``; rows whose
    target is ``ignore_index`` take part in neither part. 'mean' divides by the rows that take part,
    'sum' adds, 'none' gives per-row losses (0 for ignored rows). ``return_parts`` also returns the
    soft and hard parts (detached, reduced the same way). The gradient flows to the student only.
    A teacher of another dtype is cast to the student's.
    """
    temperature, beta, hard_weight, softcap = normalize_options(
        temperature, beta, hard_weight, softcap, ignore_index, reduction, target
    )
    student, rows_target, row_shape = flatten_rows("student_logits", student_logits, target)
    teacher, _, teacher_rows = flatten_rows("teacher_logits", teacher_logits, None)
    if teacher_rows != row_shape:
        raise ValueError(
            f"teacher_logits must have student_logits' leading (token) dims {tuple(row_shape)}; got {tuple(teacher_rows)}"
        )
    if isinstance(teacher, torch.Tensor) and teacher.dtype != student.dtype and teacher.is_floating_point():
        teacher = teacher.to(student.dtype)
    check_arguments(student, teacher, rows_target, temperature, beta, hard_weight, ignore_index, reduction, softcap)
    outputs = torch.ops.llmkernels.distillation_loss(
        student, teacher.detach(), rows_target, temperature, beta, hard_weight, ignore_index, reduction,
        bool(scale_by_temperature), softcap, wants_grad(student), backends.requested_backend(),
    )
    return finish(outputs, reduction, row_shape, student_logits.dtype, student.device.type, return_parts)


def topk_logprobs(logits, k, *, temperature=1.0, softcap=None):
    """(ids (..., k) int32, logprobs (..., k) float32): the k most likely tokens of
    softmax(c(logits) / T) and their log-probabilities, most likely first: a teacher to store and
    distil from later with ``topk_distillation_loss`` (at the same temperature and softcap)."""
    softcap = None if softcap in (None, 0, 0.0) else float(softcap)
    check_options(temperature, 0.0, 0.0, "mean", softcap, False)
    rows, _, row_shape = flatten_rows("logits", logits, None)
    check_k(k, rows.shape[-1])
    ids, logprobs = torch.ops.llmkernels.topk_logprobs(
        rows.detach(), k, float(temperature), softcap, backends.requested_backend()
    )
    return ids.reshape(*row_shape, k), logprobs.reshape(*row_shape, k)


def topk_distillation_loss(
    student_logits, teacher_ids, teacher_logprobs, target=None, *, temperature=1.0, beta=0.0, hard_weight=0.0,
    ignore_index=-100, reduction="mean", scale_by_temperature=True, softcap=None, return_parts=False,
):
    """``distillation_loss`` against a stored top-k teacher: ``teacher_ids`` (..., k) int32/int64
    and ``teacher_logprobs`` (..., k), the teacher at the distillation temperature as
    ``topk_logprobs(..., temperature=T, softcap=c)`` returns them (used as given: ``temperature``
    and ``softcap`` apply to the student only). The divergence runs over k + 1 buckets: the k
    tokens and one tail with the rest of each distribution's mass (the teacher's tail is
    max(2^-126, 1 - sum(exp(logprobs))): never 0, so the reverse KL stays finite); with k = Vs
    there is no tail and the result equals ``distillation_loss``. Other options as there.
    """
    temperature, beta, hard_weight, softcap = normalize_options(
        temperature, beta, hard_weight, softcap, ignore_index, reduction, target
    )
    student, rows_target, row_shape = flatten_rows("student_logits", student_logits, target)
    ids, _, id_rows = flatten_rows("teacher_ids", teacher_ids, None)
    logprobs, _, logprob_rows = flatten_rows("teacher_logprobs", teacher_logprobs, None)
    if id_rows != row_shape or logprob_rows != row_shape:
        raise ValueError(
            f"teacher_ids and teacher_logprobs must have student_logits' leading (token) dims {tuple(row_shape)}; "
            f"got {tuple(id_rows)} and {tuple(logprob_rows)}"
        )
    check_topk_arguments(student, ids, logprobs, rows_target, temperature, beta, hard_weight, ignore_index, reduction, softcap)
    outputs = torch.ops.llmkernels.topk_distillation_loss(
        student, ids, logprobs.detach(), rows_target, temperature, beta, hard_weight, ignore_index, reduction,
        bool(scale_by_temperature), softcap, wants_grad(student), backends.requested_backend(),
    )
    return finish(outputs, reduction, row_shape, student_logits.dtype, student.device.type, return_parts)
