"""Fused linear cross-entropy: cross_entropy(input @ weight.T + bias, target) without the (N, V) logits.

* ``llmkernels::linear_cross_entropy(input, weight, bias, target, class_weight, ignore_index,
  reduction, label_smoothing, z_loss, softcap, chunk_size, accumulate_fp32, compute_grad, backend)
  -> (loss, lse, grad_input, grad_weight, grad_bias)``: chunked over rows; each chunk's logits
  live only while that chunk is processed. For 'mean'/'sum' with ``compute_grad``, the gradients
  for an upstream gradient of 1 are formed in the same pass (three GEMMs in all, as the plain
  path needs) and returned; otherwise the grad outputs are empty.
* ``llmkernels::linear_cross_entropy_backward(grad_loss, ..., saved grads)``: scales the saved
  gradients by the upstream scalar, or, for 'none' (per-row upstream, unknown in the forward),
  recomputes each chunk's logits and forms the gradients then.

The row math is the cross_entropy family's (``ops.cross_entropy.rows``: reference, cpp, triton or
cuda rows); the GEMMs are torch's, but for the ``cpp`` backend's float32 logits and weight
gradient on AVX2 CPUs (``ops.common.cpu_gemm``). Weight-gradient accumulation across chunks runs in
float32 when ``accumulate_fp32``.

Files: this family has no ``reference.py`` and no ``triton_kernels.py`` of its own. Its only math
beyond the GEMMs is the cross-entropy rows, whose specification (``cross_entropy/reference.py``)
and Triton kernel (``cross_entropy/triton_kernels.py``) it reuses; its reference backend is the
same chunked pass with the reference rows.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from llmkernels import backends
from llmkernels.ops.common.checks import can_check_values
from llmkernels.ops.common.chunked_linear import chunked_linear, rows_per_chunk
from llmkernels.ops.common.formed_gradients import take_formed, upstream_is_one
from llmkernels.ops.common.registration import register_backends
from llmkernels.ops.cross_entropy import rows as ce_rows
from llmkernels.ops.linear_cross_entropy.arguments import check_arguments

OP = "linear_cross_entropy"

# The row math runs on the cross-entropy family's kernels: the same entry points, the same probes.
register_backends(OP, ce_rows.KERNELS)


def _chunked_pass(backend, input, weight, bias, target, class_weight, ignore_index, label_smoothing, z_loss, softcap,
                  chunk, want_grads, ce_scale, z_scale, accumulate_fp32, row_upstream=None):
    """One pass over row chunks: loss rows and lse, and (optionally) the three gradients. A float32
    master weight (and bias) with a bf16/fp16 input is cast to the input's dtype once here; its
    gradients are summed in float32 (``accumulate_fp32``) and returned as they are."""
    rows = input.shape[0]
    weight = weight.to(input.dtype)
    bias = None if bias is None else bias.to(input.dtype)
    loss_rows = torch.empty(rows, dtype=torch.float32, device=input.device)
    lse = torch.empty(rows, dtype=torch.float32, device=input.device)

    def process_chunk(start, stop, logits, grad):
        loss_rows[start:stop], lse[start:stop] = ce_rows.compute_rows(
            backend, logits, target[start:stop], class_weight, ignore_index, label_smoothing, z_loss, softcap,
            grad, ce_scale, z_scale,
        )
        if grad is not None and row_upstream is not None:
            grad.mul_(row_upstream[start:stop].to(grad.dtype).unsqueeze(-1))

    grad_input, grad_weight, grad_bias = chunked_linear(input, weight, bias, chunk, want_grads, accumulate_fp32, process_chunk, backend)
    return loss_rows, lse, grad_input, grad_weight, grad_bias


def _empty(like):
    return like.new_empty(0)


@torch.library.custom_op("llmkernels::linear_cross_entropy", mutates_args=())
def linear_cross_entropy_op(
    input: Tensor, weight: Tensor, bias: Optional[Tensor], target: Tensor, class_weight: Optional[Tensor],
    ignore_index: int, reduction: str, label_smoothing: float, z_loss: float, softcap: Optional[float],
    chunk_size: int, accumulate_fp32: bool, compute_grad: bool, backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    check_arguments(input, weight, bias, target, class_weight, reduction, label_smoothing, z_loss, softcap, ignore_index)
    chosen = backends.resolve(OP, input.device, input.dtype, backend)
    chunk = rows_per_chunk(input.shape[0], weight.shape[0], chunk_size, device_type=input.device.type)
    want_grads = compute_grad and reduction != "none"
    # The mean's factor of the formed gradients: a host float for CPU tensors (free), else a 0-dim
    # device tensor applied to the three gradients after the pass (no sync per step).
    device_scale = None
    if want_grads and reduction == "mean" and not can_check_values(target):
        device_scale = ce_rows.device_gradient_scale(target, class_weight, ignore_index, z_loss)
    if want_grads and device_scale is None:
        ce_scale, z_scale = ce_rows.gradient_scales(target, class_weight, ignore_index, reduction)
    else:
        ce_scale, z_scale = 1.0, 1.0
    loss_rows, lse, gi, gw, gb = _chunked_pass(
        chosen, input, weight, bias, target, class_weight, ignore_index, label_smoothing, z_loss, softcap,
        chunk, want_grads, ce_scale, z_scale, accumulate_fp32,
    )
    loss = ce_rows.reduce_rows(loss_rows, lse, target, class_weight, ignore_index, reduction, z_loss)
    if not want_grads:
        return loss, lse, _empty(input), _empty(weight), _empty(weight)
    if device_scale is not None:
        for grad in (gi, gw, gb):
            if grad is not None:
                grad.mul_(device_scale.to(grad.dtype))
    return loss, lse, gi, gw.to(weight.dtype), _empty(weight) if gb is None else gb.to(weight.dtype)


@linear_cross_entropy_op.register_fake
def _(input, weight, bias, target, class_weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
      chunk_size, accumulate_fp32, compute_grad, backend):
    check_arguments(input, weight, bias, target, class_weight, reduction, label_smoothing, z_loss, softcap, ignore_index)
    rows = input.shape[0]
    loss = input.new_empty(rows if reduction == "none" else (), dtype=torch.float32)
    lse = input.new_empty(rows, dtype=torch.float32)
    if not (compute_grad and reduction != "none"):
        return loss, lse, input.new_empty(0), weight.new_empty(0), weight.new_empty(0)
    grad_bias = weight.new_empty(0) if bias is None else weight.new_empty(weight.shape[0])
    return loss, lse, torch.empty_like(input, memory_format=torch.contiguous_format), torch.empty_like(weight, memory_format=torch.contiguous_format), grad_bias


@torch.library.custom_op("llmkernels::linear_cross_entropy_backward", mutates_args=())
def linear_cross_entropy_backward_op(
    grad_loss: Tensor, input: Tensor, weight: Tensor, bias: Optional[Tensor], target: Tensor,
    class_weight: Optional[Tensor], saved_grad_input: Tensor, saved_grad_weight: Tensor, saved_grad_bias: Tensor,
    ignore_index: int, reduction: str, label_smoothing: float, z_loss: float, softcap: Optional[float],
    chunk_size: int, accumulate_fp32: bool, backend: str,
) -> tuple[Tensor, Tensor, Tensor]:
    if input.numel() == 0:  # no rows: nothing flows back, and 'none' formed no gradients in the forward
        grad_bias = weight.new_zeros(weight.shape[0]) if bias is not None else weight.new_empty(0)
        return input.new_zeros(input.shape), weight.new_zeros(weight.shape), grad_bias
    if saved_grad_input.numel():
        # Formed in the forward for an upstream of 1: scale by the (scalar) upstream gradient.
        upstream = grad_loss.to(input.dtype)
        grad_bias = saved_grad_bias * upstream if bias is not None else weight.new_empty(0)
        return saved_grad_input * upstream, saved_grad_weight * upstream, grad_bias
    chosen = backends.resolve(OP, input.device, input.dtype, backend)
    chunk = rows_per_chunk(input.shape[0], weight.shape[0], chunk_size, device_type=input.device.type)
    row_upstream = grad_loss if reduction == "none" else None
    ce_scale, z_scale = (1.0, 1.0) if reduction == "none" else ce_rows.gradient_scales(target, class_weight, ignore_index, reduction, float(grad_loss))
    _, _, gi, gw, gb = _chunked_pass(
        chosen, input, weight, bias, target, class_weight, ignore_index, label_smoothing, z_loss, softcap,
        chunk, True, ce_scale, z_scale, accumulate_fp32, row_upstream,
    )
    return gi, gw.to(weight.dtype), weight.new_empty(0) if gb is None else gb.to(weight.dtype)


@linear_cross_entropy_backward_op.register_fake
def _(grad_loss, input, weight, bias, target, class_weight, saved_grad_input, saved_grad_weight, saved_grad_bias,
      ignore_index, reduction, label_smoothing, z_loss, softcap, chunk_size, accumulate_fp32, backend):
    grad_bias = weight.new_empty(0) if bias is None else weight.new_empty(weight.shape[0])
    return torch.empty_like(input, memory_format=torch.contiguous_format), torch.empty_like(weight, memory_format=torch.contiguous_format), grad_bias


def _setup(ctx, inputs, output):
    (input, weight, bias, target, class_weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
     chunk_size, accumulate_fp32, compute_grad, backend) = inputs
    ctx.save_for_backward(input, weight, bias, target, class_weight)
    # The forward's gradients are held as plain attributes, not saved tensors: the backward hands
    # them on and drops its reference, so autograd can adopt them as .grad without a copy.
    ctx.formed = list(output[2:])
    # The formed gradients (and lse) are outputs nothing differentiates: without this, autograd
    # would hand the backward a zero-filled gradient for each of them, a weight-sized one included.
    ctx.set_materialize_grads(False)
    ctx.options = (ignore_index, reduction, label_smoothing, z_loss, softcap, chunk_size, accumulate_fp32, backend)


def _backward(ctx, grad_loss, grad_lse, *unused_grads_of_grads):
    if ctx.needs_input_grad[4]:
        raise RuntimeError("llmkernels.linear_cross_entropy does not compute gradients for the class weights")
    gi, gw, gb = take_formed(ctx, "llmkernels.linear_cross_entropy")
    if grad_loss is None:  # only lse (or a formed gradient) was used: no gradient flows from the loss
        return (None,) * 14
    input, weight, bias, target, class_weight = ctx.saved_tensors
    if gi.numel() and upstream_is_one(grad_loss):
        return (gi, gw, gb if bias is not None else None) + (None,) * 11
    grad_input, grad_weight, grad_bias = torch.ops.llmkernels.linear_cross_entropy_backward(
        grad_loss, input, weight, bias, target, class_weight, gi, gw, gb, *ctx.options
    )
    return (grad_input, grad_weight, grad_bias if bias is not None else None) + (None,) * 11


linear_cross_entropy_op.register_autograd(_backward, setup_context=_setup)
