"""RMSNorm with the pre-norm block's residual add fused, on ``llmkernels.rms_norm``.

``ops="torch"`` runs PyTorch's own path (``x + residual``, then ``F.rms_norm``): the baseline.
The parameter is named ``weight``, as in ``torch.nn.RMSNorm``, so state dicts load either way.
"""

from __future__ import annotations

import torch

import llmkernels
from llmkernels.nn import torch_baseline


class RMSNorm(torch.nn.Module):
    """``forward(x, residual=None)``: y = RMSNorm(h) * weight with h = x (+ residual); returns y,
    or ``(y, h)`` when ``residual`` is given (h is the block's new residual stream). x and
    residual of different dtypes are promoted first, as ``x + residual`` would be."""

    def __init__(self, normalized_shape: int, eps: float = 1e-6, *, ops: str = "llmkernels", device=None, dtype=None):
        super().__init__()
        if isinstance(normalized_shape, (tuple, list, torch.Size)) and len(normalized_shape) == 1:
            normalized_shape = normalized_shape[0]
        if isinstance(normalized_shape, bool) or not isinstance(normalized_shape, int) or normalized_shape < 1:
            raise ValueError(f"normalized_shape must be a positive int (the last dimension); got {normalized_shape!r}")
        self.ops = torch_baseline.check_ops(ops)
        self.normalized_shape = (normalized_shape,)
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(normalized_shape, device=device, dtype=dtype))

    def forward(self, x, residual=None):
        if self.ops == "torch":
            return torch_baseline.rms_norm(x, self.weight, self.eps, residual)
        if residual is not None and residual.dtype != x.dtype:
            # As x + residual would: a bf16 sublayer output (autocast) onto a float32 stream.
            common = torch.promote_types(x.dtype, residual.dtype)
            x, residual = x.to(common), residual.to(common)
        return llmkernels.rms_norm(x, self.weight, self.eps, residual=residual)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, ops={self.ops!r}"
