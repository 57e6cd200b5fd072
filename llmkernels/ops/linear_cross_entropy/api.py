"""Public fused linear cross-entropy, with ``F.linear_cross_entropy``'s signature."""

from __future__ import annotations

import torch

from llmkernels import backends
from llmkernels.ops.common.checks import check_tensor, check_tensor_types
from llmkernels.ops.linear_cross_entropy.arguments import check_accum_dtype


def linear_cross_entropy(
    input, linear_weight, target, *, linear_bias=None, weight=None, reduction="mean", ignore_index=-100,
    label_smoothing=0.0, z_loss=0.0, softcap=None, chunk_size=None, accum_dtype=torch.float32, options=None,
):
    """``cross_entropy(input @ linear_weight.T + linear_bias, target, ...)`` without the full logits.

    ``input`` is (..., H), ``target`` (...). Rows are processed in chunks (``chunk_size`` rows, by
    default ~8M logits per chunk on a CPU and at least 4096 rows on a GPU), and for 'mean'/'sum' the gradients of input, weight and bias are
    formed chunk by chunk in the forward (three GEMMs in all). ``accum_dtype`` is the dtype the
    weight and bias gradients are summed in across chunks: float32 (the default; float64 weights
    always sum in float64) or the weight's own dtype. ``torch.float64`` with float32/bf16/fp16
    weights raises ``ValueError`` (each chunk's GEMM runs in the weight's dtype, so a float64 sum
    would not give float64 gradients): pass float64 tensors for float64 math. A float32 ``linear_weight``
    (and bias) may come with a bf16/fp16 ``input``: the GEMMs run in the input's dtype (float32
    accumulation inside) and the weight's gradient comes back in float32, summed across chunks in
    float32. Under autocast the input is cast to the autocast dtype, and a float32 weight goes in so. ``options`` is
    accepted for torch's signature and ignored. Other options as in ``llmkernels.cross_entropy``.
    """
    del options  # torch's LinearCrossEntropyOptions: chunking is ours
    if not isinstance(input, torch.Tensor) or input.dim() < 1:
        raise ValueError("input must be a tensor of shape (..., hidden)")
    if not isinstance(linear_weight, torch.Tensor):
        raise ValueError("linear_weight must be a tensor of shape (vocab, hidden)")
    accumulate_fp32 = check_accum_dtype(accum_dtype, linear_weight)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None; got {chunk_size!r}")
    if torch.is_autocast_enabled(input.device.type):
        # A float32 weight (and bias) goes in as it is: the op casts it for the GEMMs and returns its
        # gradient in float32 (one cast pass less each way than autocast's cast and its backward, and
        # the float32 sum of the chunks is not rounded to the autocast dtype on the way).
        dtype = torch.get_autocast_dtype(input.device.type)
        input = input.to(dtype)
        if linear_weight.dtype != torch.float32:
            linear_weight = linear_weight.to(dtype)
        if linear_bias is not None and linear_bias.dtype != linear_weight.dtype:
            linear_bias = linear_bias.to(linear_weight.dtype)
    softcap = None if softcap in (None, 0, 0.0) else float(softcap)
    row_shape = input.shape[:-1]
    rows_input = input.reshape(-1, input.shape[-1])
    check_tensor("target", target)
    if target.shape != row_shape:
        raise ValueError(f"target must have shape {tuple(row_shape)} (input's leading dims); got {tuple(target.shape)}")
    rows_target = target.reshape(-1)
    # The op runs arguments.check_arguments (the target's values included); only the types here.
    check_tensor_types(linear_bias=linear_bias, weight=weight)
    compute_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (rows_input, linear_weight, linear_bias)
    )
    loss, _, _, _, _ = torch.ops.llmkernels.linear_cross_entropy(
        rows_input, linear_weight, linear_bias, rows_target, weight, ignore_index, reduction, float(label_smoothing),
        float(z_loss), softcap, chunk_size or 0, accumulate_fp32,
        compute_grad, backends.requested_backend(),
    )
    if reduction == "none":
        loss = loss.reshape(row_shape)
    return loss if torch.is_autocast_enabled(input.device.type) else loss.to(input.dtype)
