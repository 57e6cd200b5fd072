"""Distillation over the rows of logits matrices, on a chosen backend: the machinery that the
logits ops and the linear (chunked) ops share.

Row contract (csrc/distillation/distillation.h; the same for every backend): per row, the soft part
(T^2 applied when asked) and the hard part, float32, 0 for ignored rows; and, when a gradient
buffer is given, grad_scale * d((1 - hard_weight) * soft + hard_weight * hard) / d student, written
in the student's dtype (the buffer may be the student logits themselves: each row is read before
it is written). ``grad_scale`` is the upstream gradient over the mean's row count (1 for sum).
"""

from __future__ import annotations

import functools

import torch

from llmkernels.ops.common.checks import can_check_values
from llmkernels.ops.common.layout import kernel_input
from llmkernels.ops.common.registration import KernelFamily
from llmkernels.ops.distillation import reference

KERNELS = KernelFamily("distillation", ("distillation_rows",), "llmkernels.ops.distillation.triton_kernels")
TOPK_KERNELS = KernelFamily("top-k distillation", ("topk_distillation_rows",), "llmkernels.ops.distillation.triton_topk")
TOPK_LOGPROBS_KERNELS = KernelFamily("top-k log-probabilities", ("topk_logprobs",),
                                     "llmkernels.ops.distillation.triton_topk")


def _targets(target):
    # The kernels take int64 targets; no target is "every row takes part, no hard part".
    if target is None:
        return None
    return target.to(torch.int64).contiguous()


def _reference_rows(rows_fn, grad_fn, student, grad, grad_scale):
    soft, hard, row_grad = reference.rows_with_gradient(rows_fn, grad_fn, student, grad_scale, grad is not None)
    if grad is not None:
        grad.copy_(row_grad)
    return soft, hard


def compute_rows(backend, student, teacher, target, temperature, beta, hard_weight, ignore_index,
                 scale_by_temperature, softcap, grad=None, grad_scale=1.0):
    """(soft, hard) float32 (N,) for logits (N, Vs), (N, Vt); the gradient into ``grad`` when given."""
    if backend == "reference":
        options = dict(teacher=teacher, target=target, temperature=temperature, beta=beta, ignore_index=ignore_index,
                       scale_by_temperature=scale_by_temperature, softcap=softcap)
        rows_fn = functools.partial(reference.distillation_rows, **options)
        grad_fn = functools.partial(reference.distillation_grad, hard_weight=hard_weight, **options)
        return _reference_rows(rows_fn, grad_fn, student, grad, grad_scale)
    rows = student.shape[0]
    soft = torch.empty(rows, dtype=torch.float32, device=student.device)
    hard = torch.empty(rows, dtype=torch.float32, device=student.device)
    KERNELS.kernel(backend, "distillation_rows")(
        kernel_input(student), kernel_input(teacher.to(student.dtype)), _targets(target),
        soft, hard, grad, float(temperature), float(beta), float(hard_weight), int(ignore_index),
        bool(scale_by_temperature), float(softcap or 0.0), float(grad_scale),
    )
    return soft, hard


def compute_topk_rows(backend, student, teacher_ids, teacher_logprobs, target, temperature, beta, hard_weight,
                      ignore_index, scale_by_temperature, softcap, grad=None, grad_scale=1.0):
    """As ``compute_rows`` against a stored top-k teacher (ids (N, k), logprobs (N, k))."""
    if backend == "reference":
        options = dict(teacher_ids=teacher_ids, teacher_logprobs=teacher_logprobs, target=target,
                       temperature=temperature, beta=beta, ignore_index=ignore_index,
                       scale_by_temperature=scale_by_temperature, softcap=softcap)
        rows_fn = functools.partial(reference.topk_rows, **options)
        grad_fn = functools.partial(reference.topk_grad, hard_weight=hard_weight, **options)
        return _reference_rows(rows_fn, grad_fn, student, grad, grad_scale)
    rows = student.shape[0]
    soft = torch.empty(rows, dtype=torch.float32, device=student.device)
    hard = torch.empty(rows, dtype=torch.float32, device=student.device)
    TOPK_KERNELS.kernel(backend, "topk_distillation_rows")(
        kernel_input(student), teacher_ids.to(torch.int64).contiguous(), teacher_logprobs.float().contiguous(),
        _targets(target), soft, hard, grad, float(temperature), float(beta),
        float(hard_weight), int(ignore_index), bool(scale_by_temperature), float(softcap or 0.0), float(grad_scale),
    )
    return soft, hard


def compute_topk_logprobs(backend, logits, k, temperature, softcap, ids=None, logprobs=None):
    """(ids (N, k) int32, logprobs (N, k) float32) of logits (N, V), most likely first; written
    into ``ids``/``logprobs`` when given (contiguous)."""
    if backend == "reference":
        best_ids, best = reference.topk_logprobs(logits, k, temperature, softcap)
        if ids is None:
            return best_ids, best
        ids.copy_(best_ids)
        logprobs.copy_(best)
        return ids, logprobs
    rows = logits.shape[0]
    if ids is None:
        ids = torch.empty(rows, k, dtype=torch.int32, device=logits.device)
        logprobs = torch.empty(rows, k, dtype=torch.float32, device=logits.device)
    TOPK_LOGPROBS_KERNELS.kernel(backend, "topk_logprobs")(
        kernel_input(logits), int(k), float(temperature), float(softcap or 0.0), ids, logprobs)
    return ids, logprobs


def row_count(target, ignore_index, rows: int):
    """Rows that take part: a 0-dim float32 tensor on the target's device (the mean's denominator
    never leaves the device), or the int ``rows`` when there is no target."""
    if target is None:
        return rows
    return (target != ignore_index).sum(dtype=torch.float32)


def reduce_parts(soft, hard, target, ignore_index, hard_weight, reduction):
    """(loss, soft part, hard part) from the per-row parts, reduced the same way."""
    rows = (1.0 - hard_weight) * soft + hard_weight * hard
    if reduction == "none":
        return rows, soft, hard
    if reduction == "sum":
        return rows.sum(), soft.sum(), hard.sum()
    count = row_count(target, ignore_index, soft.shape[0])
    count = max(count, 1) if isinstance(count, int) else count.clamp_min(1).to(soft.dtype)
    return rows.sum() / count, soft.sum() / count, hard.sum() / count


def gradient_scale(target, ignore_index, rows: int, reduction: str, upstream: float = 1.0) -> float:
    """The row kernels' gradient factor, a Python float: a host read of the count (free on a CPU;
    the forwards use ``device_gradient_scale`` for tensors the host must not read)."""
    if reduction != "mean":
        return upstream
    count = row_count(target, ignore_index, rows)
    count = int(count) if not isinstance(count, int) else count
    return upstream / count if count else 0.0


def device_gradient_scale(target, ignore_index, reduction: str):
    """None where ``gradient_scale`` may read the host (CPU tensors, or nothing to count); else the
    0-dim device factor for a mean's gradient, applied after a pass at unit scale (the gradient is
    linear in it): no sync per step."""
    if reduction != "mean" or target is None or can_check_values(target):
        return None
    count = row_count(target, ignore_index, target.shape[0])
    return torch.where(count != 0, 1.0 / count.clamp_min(1), 0.0)
