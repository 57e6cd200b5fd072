"""Fused linear distillation losses: the distillation family's losses of ``student_input @
student_weight.T (+ bias)`` against ``teacher_input @ teacher_weight.T (+ bias)`` (or a stored
top-k teacher), chunked over rows so that neither model's (N, V) logits exist.

* ``llmkernels::linear_distillation_loss(s_input, s_weight, s_bias, t_input, t_weight, t_bias,
  target, temperature, beta, hard_weight, ignore_index, reduction, scale_by_temperature, softcap,
  chunk_size, accumulate_fp32, compute_grad, backend) -> (loss, soft, hard, grad_input,
  grad_weight, grad_bias)``: for 'mean'/'sum' with ``compute_grad`` the student's gradients for an
  upstream gradient of 1 are formed in the same pass; otherwise the grad outputs are empty.
* ``llmkernels::linear_topk_distillation_loss(s_input, s_weight, s_bias, teacher_ids,
  teacher_logprobs, target, ...)``: the same against a stored top-k teacher (no teacher GEMM).
* ``llmkernels::<name>_backward``: scales the saved gradients by the upstream scalar, or for
  'none' recomputes each chunk and forms them then.
* ``llmkernels::linear_topk_logprobs(input, weight, bias, k, temperature, softcap, chunk_size,
  backend) -> (ids, logprobs)``: a teacher's top-k, chunk by chunk.

The chunk loop is ``ops.common.chunked_linear`` (shared with linear_cross_entropy); the row math is
the distillation family's (``ops.distillation.rows``: reference or cpp rows); the GEMMs are torch's.
Like linear_cross_entropy, this family has no reference.py of its own: its reference backend is
the same chunked pass with the reference rows.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from llmkernels import backends
from llmkernels.ops.common.chunked_linear import project
from llmkernels.ops.common.registration import register_backends
from llmkernels.ops.distillation import loss_dtype, rows
from llmkernels.ops.linear_distillation.arguments import check_arguments
from llmkernels.ops.linear_distillation.chunks import (
    fake_grads, finish_grads, formed_or_backward, rows_per_chunk, run_pass, scale_saved, setup_formed,
)

OP = "linear_distillation_loss"

register_backends(OP, rows.KERNELS)


def full_teacher_rows(backend, t_input, t_weight, t_bias, target, temperature, beta, hard_weight, ignore_index,
                      scale_by_temperature, softcap, chunk_size, widest):
    """row_math for a teacher projection: each chunk's teacher logits in one reused buffer."""
    n = t_input.shape[0]
    chunk = rows_per_chunk(n, widest, chunk_size, device_type=t_input.device.type)
    buffer = torch.empty(min(chunk, n), t_weight.shape[0], dtype=t_input.dtype,
                         device=t_input.device)

    def row_math(start, stop, logits, grad, scale):
        teacher = project(t_input[start:stop], t_weight, t_bias, buffer[: stop - start], backend)
        chunk_target = None if target is None else target[start:stop]
        return rows.compute_rows(backend, logits, teacher, chunk_target, temperature, beta, hard_weight,
                                 ignore_index, scale_by_temperature, softcap, grad, scale)

    return row_math


@torch.library.custom_op("llmkernels::linear_distillation_loss", mutates_args=())
def linear_distillation_loss_op(
    s_input: Tensor, s_weight: Tensor, s_bias: Optional[Tensor], t_input: Tensor,
    t_weight: Tensor, t_bias: Optional[Tensor], target: Optional[Tensor], temperature: float, beta: float,
    hard_weight: float, ignore_index: int, reduction: str, scale_by_temperature: bool, softcap: Optional[float],
    chunk_size: int, accumulate_fp32: bool, compute_grad: bool, backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    check_arguments(s_input, s_weight, s_bias, t_input, t_weight, t_bias, target, temperature, beta, hard_weight,
                    ignore_index, reduction, softcap)
    chosen = backends.resolve(OP, s_input.device, s_input.dtype, backend)
    widest = max(s_weight.shape[0], t_weight.shape[0])
    row_math = full_teacher_rows(chosen, t_input, t_weight, t_bias, target, temperature, beta, hard_weight,
                                 ignore_index, scale_by_temperature, softcap, chunk_size, widest)
    want = compute_grad and reduction != "none"
    soft, hard, *grads = run_pass(row_math, s_input, s_weight, s_bias, target, widest, ignore_index, reduction,
                                  chunk_size, accumulate_fp32, want, backend=chosen)
    loss, soft, hard = rows.reduce_parts(soft, hard, target, ignore_index, hard_weight, reduction)
    return (loss, soft, hard) + finish_grads(grads, s_input, s_weight, s_bias)


@linear_distillation_loss_op.register_fake
def _(s_input, s_weight, s_bias, t_input, t_weight, t_bias, target, temperature, beta, hard_weight, ignore_index,
      reduction, scale_by_temperature, softcap, chunk_size, accumulate_fp32, compute_grad, backend):
    check_arguments(s_input, s_weight, s_bias, t_input, t_weight, t_bias, target, temperature, beta, hard_weight,
                    ignore_index, reduction, softcap)
    shape = (s_input.shape[0],) if reduction == "none" else ()
    parts = tuple(s_input.new_empty(shape, dtype=loss_dtype(s_input)) for _ in range(3))
    return parts + fake_grads(s_input, s_weight, s_bias, compute_grad and reduction != "none")


@torch.library.custom_op("llmkernels::linear_distillation_loss_backward", mutates_args=())
def linear_distillation_loss_backward_op(
    grad_loss: Tensor, s_input: Tensor, s_weight: Tensor, s_bias: Optional[Tensor],
    t_input: Tensor, t_weight: Tensor, t_bias: Optional[Tensor], target: Optional[Tensor],
    saved_gi: Tensor, saved_gw: Tensor, saved_gb: Tensor, temperature: float, beta: float,
    hard_weight: float, ignore_index: int, reduction: str, scale_by_temperature: bool, softcap: Optional[float],
    chunk_size: int, accumulate_fp32: bool, backend: str,
) -> tuple[Tensor, Tensor, Tensor]:
    if saved_gi.numel() or s_input.numel() == 0:
        return scale_saved(grad_loss, s_input, s_weight, s_bias, saved_gi, saved_gw, saved_gb)
    chosen = backends.resolve(OP, s_input.device, s_input.dtype, backend)
    widest = max(s_weight.shape[0], t_weight.shape[0])
    row_math = full_teacher_rows(chosen, t_input, t_weight, t_bias, target, temperature, beta, hard_weight,
                                 ignore_index, scale_by_temperature, softcap, chunk_size, widest)
    _, _, *grads = run_pass(row_math, s_input, s_weight, s_bias, target, widest, ignore_index, reduction,
                            chunk_size, accumulate_fp32, True, grad_loss, backend=chosen)
    return finish_grads(grads, s_input, s_weight, s_bias)


@linear_distillation_loss_backward_op.register_fake
def _(grad_loss, s_input, s_weight, s_bias, t_input, t_weight, t_bias, target, saved_gi, saved_gw, saved_gb, *options):
    return fake_grads(s_input, s_weight, s_bias, True)


def _setup(ctx, inputs, output):
    (s_input, s_weight, s_bias, t_input, t_weight, t_bias, target, temperature, beta, hard_weight, ignore_index,
     reduction, scale, softcap, chunk_size, accumulate_fp32, _, backend) = inputs
    ctx.save_for_backward(s_input, s_weight, s_bias, t_input, t_weight, t_bias, target)
    setup_formed(ctx, output, (temperature, beta, hard_weight, ignore_index, reduction, scale, softcap, chunk_size,
                               accumulate_fp32, backend))


def _backward(ctx, grad_loss, *unused):
    s_input, s_weight, s_bias, t_input, t_weight, t_bias, target = ctx.saved_tensors
    grads = formed_or_backward(ctx, grad_loss, s_bias is not None, torch.ops.llmkernels.linear_distillation_loss_backward,
                               s_input, s_weight, s_bias, t_input, t_weight, t_bias, target)
    return grads + (None,) * 15


linear_distillation_loss_op.register_autograd(_backward, setup_context=_setup)


from llmkernels.ops.linear_distillation import topk_ops  # noqa: E402,F401  (registers the top-k ops)
