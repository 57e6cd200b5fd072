"""Distillation-loss ops on logits: definitions, fake kernels, autograd and routing.

* ``llmkernels::distillation_loss(student, teacher, target, temperature, beta, hard_weight,
  ignore_index, reduction, scale_by_temperature, softcap, compute_grad, backend)
  -> (loss, soft, hard, grad_student)``: student (N, Vs), teacher (N, Vt) logits; one pass per
  row pair (``rows``). For 'mean'/'sum' with ``compute_grad`` the student's gradient for an
  upstream gradient of 1 is formed in the same pass (the backward only scales it); otherwise the
  grad output is empty.
* ``llmkernels::topk_distillation_loss(student, teacher_ids, teacher_logprobs, target, ...)``: the
  same against a stored top-k teacher.
* ``llmkernels::<name>_backward(grad_loss, ..., saved_grad, ...)``: scales the saved gradient by
  the upstream scalar, or, for 'none' (a per-row upstream), recomputes the rows' gradient.
* ``llmkernels::topk_logprobs(logits, k, temperature, softcap, backend) -> (ids int32,
  logprobs float32)``: no gradient (a stored teacher is a constant).

The gradient flows to the student only: the teacher's logits and log-probabilities are constants.
Autocast: no cast (a float32 copy of bf16 logits is the memory these ops avoid); math in float32.
The semantics are ``reference.py``'s.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from llmkernels import backends
from llmkernels.ops.common.formed_gradients import take_formed, upstream_is_one
from llmkernels.ops.common.registration import register_backends
from llmkernels.ops.distillation import rows
from llmkernels.ops.distillation.arguments import check_arguments, check_k, check_logits, check_topk_arguments

OP = "distillation_loss"
TOPK_OP = "topk_distillation_loss"
TOPK_LOGPROBS_OP = "topk_logprobs"

register_backends(OP, rows.KERNELS)
register_backends(TOPK_OP, rows.TOPK_KERNELS)
register_backends(TOPK_LOGPROBS_OP, rows.TOPK_LOGPROBS_KERNELS)


def _loss_shape(student, reduction):
    return (student.shape[0],) if reduction == "none" else ()


def loss_dtype(student):
    """The losses' dtype: float32, float64 for float64 logits (the reference's precision)."""
    return torch.promote_types(student.dtype, torch.float32)


def _fake_outputs(student, reduction, compute_grad):
    shape = _loss_shape(student, reduction)
    parts = [student.new_empty(shape, dtype=loss_dtype(student)) for _ in range(3)]
    want = compute_grad and reduction != "none"
    grad = torch.empty_like(student, memory_format=torch.contiguous_format) if want else student.new_empty(0)
    return (*parts, grad)


def _forward(compute, student, target, hard_weight, ignore_index, reduction, compute_grad):
    """loss, soft, hard, grad for ``compute(grad, grad_scale) -> (soft_rows, hard_rows)``."""
    want = compute_grad and reduction != "none"
    grad = torch.empty(student.shape, dtype=student.dtype, device=student.device) if want else None
    device_scale = rows.device_gradient_scale(target, ignore_index, reduction) if want else None
    scale = rows.gradient_scale(target, ignore_index, student.shape[0], reduction) if want and device_scale is None else 1.0
    soft_rows, hard_rows = compute(grad, scale)
    if device_scale is not None:
        grad.mul_(device_scale.to(grad.dtype))
    loss, soft, hard = rows.reduce_parts(soft_rows, hard_rows, target, ignore_index, hard_weight, reduction)
    return loss, soft, hard, student.new_empty(0) if grad is None else grad


def _backward_grad(compute, grad_loss, student, target, saved_grad, ignore_index, reduction):
    """The student's gradient for ``grad_loss`` (see the module docstring)."""
    if student.numel() == 0:
        return torch.zeros(student.shape, dtype=student.dtype, device=student.device)
    if saved_grad.numel():
        return saved_grad * grad_loss.to(saved_grad.dtype)
    grad = torch.empty(student.shape, dtype=student.dtype, device=student.device)
    if reduction == "none":
        compute(grad, 1.0)
        return grad.mul_(grad_loss.to(grad.dtype).unsqueeze(-1))
    # The upstream scalar is read on the host: free on a CPU, a host sync on a GPU.
    compute(grad, rows.gradient_scale(target, ignore_index, student.shape[0], reduction, float(grad_loss)))
    return grad


def _formed_or_backward(ctx, grad_loss, backward_op, *args):
    """The saved forward gradient when the upstream is 1 (no copy), else the backward op."""
    formed = take_formed(ctx, "llmkernels distillation")
    if formed.numel() and upstream_is_one(grad_loss):
        return formed
    return backward_op(grad_loss, *args, formed, *ctx.options)


# ---- distillation_loss ------------------------------------------------------------------------


@torch.library.custom_op("llmkernels::distillation_loss", mutates_args=())
def distillation_loss_op(
    student: Tensor, teacher: Tensor, target: Optional[Tensor], temperature: float, beta: float, hard_weight: float,
    ignore_index: int, reduction: str, scale_by_temperature: bool, softcap: Optional[float], compute_grad: bool,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    check_arguments(student, teacher, target, temperature, beta, hard_weight, ignore_index, reduction, softcap)
    chosen = backends.resolve(OP, student.device, student.dtype, backend)

    def compute(grad, scale):
        return rows.compute_rows(chosen, student, teacher, target, temperature, beta, hard_weight, ignore_index,
                                 scale_by_temperature, softcap, grad, scale)

    return _forward(compute, student, target, hard_weight, ignore_index, reduction, compute_grad)


@distillation_loss_op.register_fake
def _(student, teacher, target, temperature, beta, hard_weight, ignore_index, reduction, scale_by_temperature, softcap,
      compute_grad, backend):
    check_arguments(student, teacher, target, temperature, beta, hard_weight, ignore_index, reduction, softcap)
    return _fake_outputs(student, reduction, compute_grad)


@torch.library.custom_op("llmkernels::distillation_loss_backward", mutates_args=())
def distillation_loss_backward_op(
    grad_loss: Tensor, student: Tensor, teacher: Tensor, target: Optional[Tensor], saved_grad: Tensor,
    temperature: float, beta: float, hard_weight: float, ignore_index: int, reduction: str,
    scale_by_temperature: bool, softcap: Optional[float], backend: str,
) -> Tensor:
    chosen = backends.resolve(OP, student.device, student.dtype, backend)

    def compute(grad, scale):
        return rows.compute_rows(chosen, student, teacher, target, temperature, beta, hard_weight, ignore_index,
                                 scale_by_temperature, softcap, grad, scale)

    return _backward_grad(compute, grad_loss, student, target, saved_grad, ignore_index, reduction)


@distillation_loss_backward_op.register_fake
def _(grad_loss, student, teacher, target, saved_grad, temperature, beta, hard_weight, ignore_index, reduction,
      scale_by_temperature, softcap, backend):
    return torch.empty_like(student, memory_format=torch.contiguous_format)


def _setup(ctx, inputs, output):
    student, teacher, target, temperature, beta, hard_weight, ignore_index, reduction, scale, softcap, _, backend = inputs
    ctx.save_for_backward(student, teacher, target)
    # The forward's gradient is a plain attribute, not a saved tensor: the backward hands it on
    # and drops its reference, so autograd can adopt it as .grad without a copy.
    ctx.formed = output[3]
    ctx.options = (temperature, beta, hard_weight, ignore_index, reduction, scale, softcap, backend)


def _backward(ctx, grad_loss, *unused_grads_of_parts):
    student, teacher, target = ctx.saved_tensors
    grad = _formed_or_backward(ctx, grad_loss, torch.ops.llmkernels.distillation_loss_backward, student, teacher, target)
    return (grad,) + (None,) * 11


distillation_loss_op.register_autograd(_backward, setup_context=_setup)


# ---- topk_distillation_loss -------------------------------------------------------------------


@torch.library.custom_op("llmkernels::topk_distillation_loss", mutates_args=())
def topk_distillation_loss_op(
    student: Tensor, teacher_ids: Tensor, teacher_logprobs: Tensor, target: Optional[Tensor], temperature: float,
    beta: float, hard_weight: float, ignore_index: int, reduction: str, scale_by_temperature: bool,
    softcap: Optional[float], compute_grad: bool, backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    check_topk_arguments(student, teacher_ids, teacher_logprobs, target, temperature, beta, hard_weight, ignore_index,
                         reduction, softcap)
    chosen = backends.resolve(TOPK_OP, student.device, student.dtype, backend)

    def compute(grad, scale):
        return rows.compute_topk_rows(chosen, student, teacher_ids, teacher_logprobs, target, temperature, beta,
                                      hard_weight, ignore_index, scale_by_temperature, softcap, grad, scale)

    return _forward(compute, student, target, hard_weight, ignore_index, reduction, compute_grad)


@topk_distillation_loss_op.register_fake
def _(student, teacher_ids, teacher_logprobs, target, temperature, beta, hard_weight, ignore_index, reduction,
      scale_by_temperature, softcap, compute_grad, backend):
    check_topk_arguments(student, teacher_ids, teacher_logprobs, target, temperature, beta, hard_weight, ignore_index,
                         reduction, softcap)
    return _fake_outputs(student, reduction, compute_grad)


@torch.library.custom_op("llmkernels::topk_distillation_loss_backward", mutates_args=())
def topk_distillation_loss_backward_op(
    grad_loss: Tensor, student: Tensor, teacher_ids: Tensor, teacher_logprobs: Tensor, target: Optional[Tensor],
    saved_grad: Tensor, temperature: float, beta: float, hard_weight: float, ignore_index: int, reduction: str,
    scale_by_temperature: bool, softcap: Optional[float], backend: str,
) -> Tensor:
    chosen = backends.resolve(TOPK_OP, student.device, student.dtype, backend)

    def compute(grad, scale):
        return rows.compute_topk_rows(chosen, student, teacher_ids, teacher_logprobs, target, temperature, beta,
                                      hard_weight, ignore_index, scale_by_temperature, softcap, grad, scale)

    return _backward_grad(compute, grad_loss, student, target, saved_grad, ignore_index, reduction)


@topk_distillation_loss_backward_op.register_fake
def _(grad_loss, student, teacher_ids, teacher_logprobs, target, saved_grad, temperature, beta, hard_weight,
      ignore_index, reduction, scale_by_temperature, softcap, backend):
    return torch.empty_like(student, memory_format=torch.contiguous_format)


def _topk_setup(ctx, inputs, output):
    (student, teacher_ids, teacher_logprobs, target, temperature, beta, hard_weight, ignore_index, reduction, scale,
     softcap, _, backend) = inputs
    ctx.save_for_backward(student, teacher_ids, teacher_logprobs, target)
    ctx.formed = output[3]
    ctx.options = (temperature, beta, hard_weight, ignore_index, reduction, scale, softcap, backend)


def _topk_backward(ctx, grad_loss, *unused_grads_of_parts):
    student, teacher_ids, teacher_logprobs, target = ctx.saved_tensors
    grad = _formed_or_backward(
        ctx, grad_loss, torch.ops.llmkernels.topk_distillation_loss_backward, student, teacher_ids, teacher_logprobs, target
    )
    return (grad,) + (None,) * 12


topk_distillation_loss_op.register_autograd(_topk_backward, setup_context=_topk_setup)


# ---- topk_logprobs ----------------------------------------------------------------------------


@torch.library.custom_op("llmkernels::topk_logprobs", mutates_args=())
def topk_logprobs_op(logits: Tensor, k: int, temperature: float, softcap: Optional[float], backend: str) -> tuple[Tensor, Tensor]:
    check_logits("logits", logits)
    check_k(k, logits.shape[1])
    chosen = backends.resolve(TOPK_LOGPROBS_OP, logits.device, logits.dtype, backend)
    return rows.compute_topk_logprobs(chosen, logits, k, temperature, softcap)


@topk_logprobs_op.register_fake
def _(logits, k, temperature, softcap, backend):
    check_logits("logits", logits)
    check_k(k, logits.shape[1])
    rows_ = logits.shape[0]
    return logits.new_empty(rows_, k, dtype=torch.int32), logits.new_empty(rows_, k, dtype=torch.float32)
