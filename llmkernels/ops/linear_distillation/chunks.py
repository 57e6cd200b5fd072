"""The pieces every linear distillation op shares: one chunked pass (the chunk loop is
``ops.common.chunked_linear``), the gradient outputs, and the forward-formed gradients' autograd."""

from __future__ import annotations

import torch

from llmkernels.ops.common.chunked_linear import chunked_linear, rows_per_chunk
from llmkernels.ops.common.formed_gradients import take_formed, upstream_is_one
from llmkernels.ops.distillation import rows


def chunked_rows(s_input, s_weight, s_bias, chunk_size, want_grads, accumulate_fp32, row_fn, row_upstream=None,
                 backend="reference"):
    """(soft_rows, hard_rows, grad_input, grad_weight, grad_bias) of one pass over row chunks;
    ``row_fn(start, stop, logits, grad) -> (soft, hard)`` runs the row math on one chunk."""
    n = s_input.shape[0]
    dtype = torch.promote_types(s_input.dtype, torch.float32)
    soft = torch.empty(n, dtype=dtype, device=s_input.device)
    hard = torch.empty(n, dtype=dtype, device=s_input.device)

    def process_chunk(start, stop, logits, grad):
        soft[start:stop], hard[start:stop] = row_fn(start, stop, logits, grad)
        if grad is not None and row_upstream is not None:
            grad.mul_(row_upstream[start:stop].to(grad.dtype).unsqueeze(-1))

    grads = chunked_linear(s_input, s_weight, s_bias, chunk_size, want_grads, accumulate_fp32, process_chunk, backend)
    return (soft, hard) + grads


def finish_grads(grads, s_input, s_weight, s_bias):
    """The op's three gradient outputs in the parameters' dtypes (empty where absent)."""
    gi, gw, gb = grads
    if gi is None:
        return s_input.new_empty(0), s_weight.new_empty(0), s_weight.new_empty(0)
    return gi, gw.to(s_weight.dtype), s_weight.new_empty(0) if gb is None else gb.to(s_weight.dtype)


def fake_grads(s_input, s_weight, s_bias, want):
    if not want:
        return s_input.new_empty(0), s_weight.new_empty(0), s_weight.new_empty(0)
    gb = s_weight.new_empty(0) if s_bias is None else s_weight.new_empty(s_weight.shape[0])
    return (torch.empty_like(s_input, memory_format=torch.contiguous_format),
            torch.empty_like(s_weight, memory_format=torch.contiguous_format), gb)


def run_pass(row_math, s_input, s_weight, s_bias, target, widest, ignore_index, reduction, chunk_size,
             accumulate_fp32, want_grads, upstream=None, backend="reference"):
    """One chunked pass for the forward (upstream None: 1) or the backward (upstream: grad_loss);
    ``backend`` picks the student GEMMs (``ops.common.cpu_gemm``).
    ``row_math(start, stop, logits, grad, grad_scale) -> (soft, hard)``."""
    n = s_input.shape[0]
    chunk = rows_per_chunk(n, widest, chunk_size, device_type=s_input.device.type)
    row_upstream = upstream if upstream is not None and reduction == "none" else None
    # The forward's mean factor stays on the device for tensors the host must not read (applied to
    # the three gradients after the pass); the backward reads its upstream scalar on the host.
    device_scale = rows.device_gradient_scale(target, ignore_index, reduction) if want_grads and upstream is None else None
    if not want_grads or row_upstream is not None or device_scale is not None:
        scale = 1.0
    else:
        scale = rows.gradient_scale(target, ignore_index, n, reduction, 1.0 if upstream is None else float(upstream))

    def row_fn(start, stop, logits, grad):
        return row_math(start, stop, logits, grad, scale)

    result = chunked_rows(s_input, s_weight, s_bias, chunk, want_grads, accumulate_fp32, row_fn, row_upstream, backend)
    if device_scale is not None:
        for grad in result[2:]:
            if grad is not None:
                grad.mul_(device_scale.to(grad.dtype))
    return result


def scale_saved(grad_loss, s_input, s_weight, s_bias, saved_gi, saved_gw, saved_gb):
    """The gradients formed in the forward (upstream 1), scaled by the upstream scalar."""
    if s_input.numel() == 0 and not saved_gi.numel():
        gb = s_weight.new_empty(0) if s_bias is None else torch.zeros_like(s_bias)
        return torch.zeros_like(s_input), torch.zeros_like(s_weight), gb
    upstream = grad_loss.to(s_input.dtype)
    gb = saved_gb * upstream if s_bias is not None else s_weight.new_empty(0)
    return saved_gi * upstream, saved_gw * upstream, gb


def setup_formed(ctx, output, options):
    # The forward's gradients are plain attributes, not saved tensors: the backward hands them on
    # and drops its reference, so autograd can adopt them as .grad without a copy.
    ctx.formed = list(output[3:])
    ctx.options = options


def formed_or_backward(ctx, grad_loss, has_bias, backward_op, *args):
    gi, gw, gb = take_formed(ctx, "llmkernels linear distillation")
    if gi.numel() and upstream_is_one(grad_loss):
        return gi, gw, gb if has_bias else None
    gi, gw, gb = backward_op(grad_loss, *args, gi, gw, gb, *ctx.options)
    return gi, gw, gb if has_bias else None
