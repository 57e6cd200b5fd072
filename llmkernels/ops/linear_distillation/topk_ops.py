"""The linear top-k ops: ``linear_topk_distillation_loss`` (+ backward) and ``linear_topk_logprobs``
(see the package docstring). No teacher GEMM: the stored teacher is read chunk by chunk."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from llmkernels import backends
from llmkernels.ops.common.chunked_linear import project
from llmkernels.ops.common.registration import register_backends
from llmkernels.ops.distillation import loss_dtype, rows
from llmkernels.ops.linear_distillation.arguments import check_logprobs_arguments, check_topk
from llmkernels.ops.linear_distillation.chunks import (
    fake_grads, finish_grads, formed_or_backward, rows_per_chunk, run_pass, scale_saved, setup_formed,
)

TOPK_OP = "linear_topk_distillation_loss"
TOPK_LOGPROBS_OP = "linear_topk_logprobs"

register_backends(TOPK_OP, rows.TOPK_KERNELS)
register_backends(TOPK_LOGPROBS_OP, rows.TOPK_LOGPROBS_KERNELS)


def topk_teacher_rows(backend, teacher_ids, teacher_logprobs, target, temperature, beta, hard_weight, ignore_index,
                      scale_by_temperature, softcap):
    def row_math(start, stop, logits, grad, scale):
        chunk_target = None if target is None else target[start:stop]
        return rows.compute_topk_rows(backend, logits, teacher_ids[start:stop], teacher_logprobs[start:stop],
                                      chunk_target, temperature, beta, hard_weight, ignore_index,
                                      scale_by_temperature, softcap, grad, scale)

    return row_math


@torch.library.custom_op("llmkernels::linear_topk_distillation_loss", mutates_args=())
def linear_topk_distillation_loss_op(
    s_input: Tensor, s_weight: Tensor, s_bias: Optional[Tensor], teacher_ids: Tensor, teacher_logprobs: Tensor,
    target: Optional[Tensor], temperature: float, beta: float, hard_weight: float, ignore_index: int, reduction: str,
    scale_by_temperature: bool, softcap: Optional[float], chunk_size: int, accumulate_fp32: bool, compute_grad: bool,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    check_topk(s_input, s_weight, s_bias, teacher_ids, teacher_logprobs, target, temperature, beta, hard_weight,
               ignore_index, reduction, softcap)
    chosen = backends.resolve(TOPK_OP, s_input.device, s_input.dtype, backend)
    row_math = topk_teacher_rows(chosen, teacher_ids, teacher_logprobs, target, temperature, beta, hard_weight,
                                 ignore_index, scale_by_temperature, softcap)
    want = compute_grad and reduction != "none"
    soft, hard, *grads = run_pass(row_math, s_input, s_weight, s_bias, target, s_weight.shape[0], ignore_index,
                                  reduction, chunk_size, accumulate_fp32, want, backend=chosen)
    loss, soft, hard = rows.reduce_parts(soft, hard, target, ignore_index, hard_weight, reduction)
    return (loss, soft, hard) + finish_grads(grads, s_input, s_weight, s_bias)


@linear_topk_distillation_loss_op.register_fake
def _(s_input, s_weight, s_bias, teacher_ids, teacher_logprobs, target, temperature, beta, hard_weight, ignore_index,
      reduction, scale_by_temperature, softcap, chunk_size, accumulate_fp32, compute_grad, backend):
    check_topk(s_input, s_weight, s_bias, teacher_ids, teacher_logprobs, target, temperature, beta, hard_weight,
               ignore_index, reduction, softcap)
    shape = (s_input.shape[0],) if reduction == "none" else ()
    parts = tuple(s_input.new_empty(shape, dtype=loss_dtype(s_input)) for _ in range(3))
    return parts + fake_grads(s_input, s_weight, s_bias, compute_grad and reduction != "none")


@torch.library.custom_op("llmkernels::linear_topk_distillation_loss_backward", mutates_args=())
def linear_topk_distillation_loss_backward_op(
    grad_loss: Tensor, s_input: Tensor, s_weight: Tensor, s_bias: Optional[Tensor], teacher_ids: Tensor,
    teacher_logprobs: Tensor, target: Optional[Tensor], saved_gi: Tensor, saved_gw: Tensor, saved_gb: Tensor,
    temperature: float, beta: float, hard_weight: float, ignore_index: int, reduction: str,
    scale_by_temperature: bool, softcap: Optional[float], chunk_size: int, accumulate_fp32: bool, backend: str,
) -> tuple[Tensor, Tensor, Tensor]:
    if saved_gi.numel() or s_input.numel() == 0:
        return scale_saved(grad_loss, s_input, s_weight, s_bias, saved_gi, saved_gw, saved_gb)
    chosen = backends.resolve(TOPK_OP, s_input.device, s_input.dtype, backend)
    row_math = topk_teacher_rows(chosen, teacher_ids, teacher_logprobs, target, temperature, beta, hard_weight,
                                 ignore_index, scale_by_temperature, softcap)
    _, _, *grads = run_pass(row_math, s_input, s_weight, s_bias, target, s_weight.shape[0], ignore_index, reduction,
                            chunk_size, accumulate_fp32, True, grad_loss, backend=chosen)
    return finish_grads(grads, s_input, s_weight, s_bias)


@linear_topk_distillation_loss_backward_op.register_fake
def _(grad_loss, s_input, s_weight, s_bias, teacher_ids, teacher_logprobs, target, saved_gi, saved_gw, saved_gb,
      *options):
    return fake_grads(s_input, s_weight, s_bias, True)


def _setup(ctx, inputs, output):
    (s_input, s_weight, s_bias, teacher_ids, teacher_logprobs, target, temperature, beta, hard_weight, ignore_index,
     reduction, scale, softcap, chunk_size, accumulate_fp32, _, backend) = inputs
    ctx.save_for_backward(s_input, s_weight, s_bias, teacher_ids, teacher_logprobs, target)
    setup_formed(ctx, output, (temperature, beta, hard_weight, ignore_index, reduction, scale, softcap, chunk_size,
                               accumulate_fp32, backend))


def _backward(ctx, grad_loss, *unused):
    s_input, s_weight, s_bias, teacher_ids, teacher_logprobs, target = ctx.saved_tensors
    grads = formed_or_backward(ctx, grad_loss, s_bias is not None,
                               torch.ops.llmkernels.linear_topk_distillation_loss_backward,
                               s_input, s_weight, s_bias, teacher_ids, teacher_logprobs, target)
    return grads + (None,) * 14


linear_topk_distillation_loss_op.register_autograd(_backward, setup_context=_setup)


@torch.library.custom_op("llmkernels::linear_topk_logprobs", mutates_args=())
def linear_topk_logprobs_op(input: Tensor, weight: Tensor, bias: Optional[Tensor], k: int, temperature: float,
                            softcap: Optional[float], chunk_size: int, backend: str) -> tuple[Tensor, Tensor]:
    check_logprobs_arguments(input, weight, bias, k)
    chosen = backends.resolve(TOPK_LOGPROBS_OP, input.device, input.dtype, backend)
    n = input.shape[0]
    ids = torch.empty(n, k, dtype=torch.int32, device=input.device)
    logprobs = torch.empty(n, k, dtype=torch.float32, device=input.device)
    chunk = rows_per_chunk(n, weight.shape[0], chunk_size, device_type=input.device.type)
    buffer = torch.empty(min(chunk, n), weight.shape[0], dtype=input.dtype, device=input.device)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        logits = project(input[start:stop], weight, bias, buffer[: stop - start], chosen)
        rows.compute_topk_logprobs(chosen, logits, k, temperature, softcap, ids[start:stop], logprobs[start:stop])
    return ids, logprobs


@linear_topk_logprobs_op.register_fake
def _(input, weight, bias, k, temperature, softcap, chunk_size, backend):
    check_logprobs_arguments(input, weight, bias, k)
    n = input.shape[0]
    return input.new_empty(n, k, dtype=torch.int32), input.new_empty(n, k, dtype=torch.float32)
