"""Public fused linear distillation losses and the chunked top-k teacher."""

from __future__ import annotations

import torch

from llmkernels import backends
from llmkernels.ops.distillation.arguments import check_options
from llmkernels.ops.distillation.api import finish, flatten_rows, normalize_options, wants_grad
from llmkernels.ops.linear_distillation.arguments import (
    check_accum_dtype, check_arguments, check_logprobs_arguments, check_topk,
)


def _chunk_size(chunk_size) -> int:
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None; got {chunk_size!r}")
    return chunk_size or 0


def _autocast(device_type, *tensors):
    """Under autocast the projections run in the autocast dtype (float32 accumulation inside)."""
    if not torch.is_autocast_enabled(device_type):
        return tensors
    dtype = torch.get_autocast_dtype(device_type)
    return tuple(None if t is None else t.to(dtype) for t in tensors)


def _check_weight(name, weight):
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(weight).__name__}")


def linear_distillation_loss(
    student_input, student_weight, teacher_input, teacher_weight, target=None, *, student_bias=None,
    teacher_bias=None, temperature=1.0, beta=0.0, hard_weight=0.0, ignore_index=-100, reduction="mean",
    scale_by_temperature=True, softcap=None, return_parts=False, chunk_size=None, accum_dtype=torch.float32,
):
    """``distillation_loss(student_input @ student_weight.T + student_bias, teacher_input @
    teacher_weight.T + teacher_bias, target, ...)`` without either model's (N, V) logits.

    Inputs (..., Hs) and (..., Ht) with the same leading (token) dims; rows are processed in chunks
    (``chunk_size`` rows, by default ~8M logits per chunk on a CPU and at least 4096 rows on a
    GPU). For 'mean'/'sum' the gradients of the
    student's input, weight and bias are formed chunk by chunk in the forward; the teacher gets
    none. Weight-gradient accumulation runs in ``accum_dtype`` (float32, or the weight's dtype).
    Under autocast the projections run in the autocast dtype. Options as in ``distillation_loss``.
    """
    temperature, beta, hard_weight, softcap = normalize_options(
        temperature, beta, hard_weight, softcap, ignore_index, reduction, target
    )
    _check_weight("student_weight", student_weight)
    _check_weight("teacher_weight", teacher_weight)
    accumulate_fp32 = check_accum_dtype(accum_dtype, student_weight)
    s_input, rows_target, row_shape = flatten_rows("student_input", student_input, target)
    t_input, _, teacher_rows = flatten_rows("teacher_input", teacher_input, None)
    if teacher_rows != row_shape:
        raise ValueError(
            f"teacher_input must have student_input's leading (token) dims {tuple(row_shape)}; got {tuple(teacher_rows)}"
        )
    s_input, student_weight, student_bias = _autocast(s_input.device.type, s_input, student_weight, student_bias)
    t_input, teacher_weight, teacher_bias = _autocast(s_input.device.type, t_input, teacher_weight, teacher_bias)
    check_arguments(s_input, student_weight, student_bias, t_input, teacher_weight, teacher_bias, rows_target,
                    temperature, beta, hard_weight, ignore_index, reduction, softcap)
    detached = [None if t is None else t.detach() for t in (t_input, teacher_weight, teacher_bias)]
    outputs = torch.ops.llmkernels.linear_distillation_loss(
        s_input, student_weight, student_bias, *detached, rows_target, temperature, beta, hard_weight, ignore_index,
        reduction, bool(scale_by_temperature), softcap, _chunk_size(chunk_size), accumulate_fp32,
        wants_grad(s_input, student_weight, student_bias), backends.requested_backend(),
    )
    return finish(outputs, reduction, row_shape, student_input.dtype, s_input.device.type, return_parts)


def linear_topk_logprobs(input, weight, k, *, bias=None, temperature=1.0, softcap=None, chunk_size=None):
    """``topk_logprobs(input @ weight.T + bias, k, ...)`` chunk by chunk, without the full logits:
    (ids (..., k) int32, logprobs (..., k) float32)."""
    softcap = None if softcap in (None, 0, 0.0) else float(softcap)
    check_options(temperature, 0.0, 0.0, "mean", softcap, False)
    _check_weight("linear_weight", weight)
    rows, _, row_shape = flatten_rows("input", input, None)
    rows, weight, bias = _autocast(rows.device.type, rows, weight, bias)
    check_logprobs_arguments(rows, weight, bias, k)
    ids, logprobs = torch.ops.llmkernels.linear_topk_logprobs(
        rows.detach(), weight.detach(), None if bias is None else bias.detach(), k, float(temperature), softcap,
        _chunk_size(chunk_size), backends.requested_backend(),
    )
    return ids.reshape(*row_shape, k), logprobs.reshape(*row_shape, k)


def linear_topk_distillation_loss(
    student_input, student_weight, teacher_ids, teacher_logprobs, target=None, *, student_bias=None, temperature=1.0,
    beta=0.0, hard_weight=0.0, ignore_index=-100, reduction="mean", scale_by_temperature=True, softcap=None,
    return_parts=False, chunk_size=None, accum_dtype=torch.float32,
):
    """``topk_distillation_loss(student_input @ student_weight.T + student_bias, teacher_ids,
    teacher_logprobs, target, ...)`` without the student's (N, V) logits (and no teacher GEMM at all).
    Options as in ``linear_distillation_loss`` and ``topk_distillation_loss``."""
    temperature, beta, hard_weight, softcap = normalize_options(
        temperature, beta, hard_weight, softcap, ignore_index, reduction, target
    )
    _check_weight("student_weight", student_weight)
    accumulate_fp32 = check_accum_dtype(accum_dtype, student_weight)
    s_input, rows_target, row_shape = flatten_rows("student_input", student_input, target)
    ids, _, id_rows = flatten_rows("teacher_ids", teacher_ids, None)
    logprobs, _, logprob_rows = flatten_rows("teacher_logprobs", teacher_logprobs, None)
    if id_rows != row_shape or logprob_rows != row_shape:
        raise ValueError(
            f"teacher_ids and teacher_logprobs must have student_input's leading (token) dims {tuple(row_shape)}; "
            f"got {tuple(id_rows)} and {tuple(logprob_rows)}"
        )
    s_input, student_weight, student_bias = _autocast(s_input.device.type, s_input, student_weight, student_bias)
    check_topk(s_input, student_weight, student_bias, ids, logprobs, rows_target, temperature, beta, hard_weight,
               ignore_index, reduction, softcap)
    outputs = torch.ops.llmkernels.linear_topk_distillation_loss(
        s_input, student_weight, student_bias, ids, logprobs.detach(), rows_target, temperature, beta, hard_weight,
        ignore_index, reduction, bool(scale_by_temperature), softcap, _chunk_size(chunk_size), accumulate_fp32,
        wants_grad(s_input, student_weight, student_bias), backends.requested_backend(),
    )
    return finish(outputs, reduction, row_shape, student_input.dtype, s_input.device.type, return_parts)
