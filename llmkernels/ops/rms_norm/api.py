"""Public rms_norm function: a thin wrapper that validates, picks the requested backend, calls the op."""

from __future__ import annotations

import torch

from llmkernels import backends
from llmkernels.ops.common.checks import check_tensor, check_tensor_types
from llmkernels.ops.rms_norm import arguments


def rms_norm(x, weight, eps=1e-6, *, residual=None, out_dtype=None):
    """Root-mean-square normalisation over the last dimension, with the residual add fused.

    ``y = h / sqrt(mean(h^2, -1) + eps) * weight`` with ``h = x + residual`` (or ``h = x``).
    x has any leading shape and a last dimension D; ``weight`` is (D,) (float32 or x's dtype) or
    None for no scale; ``residual``, when given, has x's shape and device and any floating dtype:
    h is stored in the dtype ``x + residual`` would have (a bfloat16 sublayer output added onto a
    float32 residual stream gives a float32 h) and y normalises that stored h. Math runs in
    float32 (float64 for a float64 h).

    ``out_dtype`` (a floating torch.dtype, default h's dtype) is y's dtype: the float32 result is
    rounded once into it, in the same pass (e.g. bfloat16 for the projections that read y under
    autocast, with no separate cast).

    Returns y, or ``(y, h)`` when ``residual`` is given (the pre-norm block's new residual
    stream and the normalised input of its sublayer, in one pass). The backward gives x and
    residual the same gradient, each in its own dtype, and reduces the weight's gradient
    deterministically.
    """
    # The op runs arguments.check_all; here only what its schema would refuse first.
    check_tensor("x", x)
    check_tensor_types(residual=residual, weight=weight)
    arguments.check_eps(eps)
    arguments.check_dtype_arg("out_dtype", out_dtype)
    y, h, _ = torch.ops.llmkernels.rms_norm(x, residual, weight, eps, backends.requested_backend(), out_dtype)
    return y if residual is None else (y, h)
