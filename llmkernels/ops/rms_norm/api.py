"""Public rms_norm function: a thin wrapper that validates, picks the requested backend, calls the op."""

from __future__ import annotations

import torch

from llmkernels import backends
from llmkernels.ops.common.checks import check_tensor, check_tensor_types
from llmkernels.ops.rms_norm import arguments


def rms_norm(x, weight, eps=1e-6, *, residual=None):
    """Root-mean-square normalisation over the last dimension, with the residual add fused.

    ``y = h / sqrt(mean(h^2, -1) + eps) * weight`` with ``h = x + residual`` (or ``h = x``).
    x has any leading shape and a last dimension D; ``weight`` is (D,) (float32 or x's dtype) or
    None for no scale; ``residual``, when given, has x's shape, dtype and device. Math runs in
    float32 and y (and h) have x's dtype; h is stored in x's dtype and y normalises that stored h.

    Returns y, or ``(y, h)`` when ``residual`` is given (the pre-norm block's new residual
    stream and the normalised input of its sublayer, in one pass). The backward gives x and
    residual the same gradient and reduces the weight's gradient deterministically.
    """
    # The op runs arguments.check_all; here only what its schema would refuse first.
    check_tensor("x", x)
    check_tensor_types(residual=residual, weight=weight)
    arguments.check_eps(eps)
    y, h, _ = torch.ops.llmkernels.rms_norm(x, residual, weight, eps, backends.requested_backend())
    return y if residual is None else (y, h)
