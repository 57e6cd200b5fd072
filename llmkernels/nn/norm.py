"""RMSNorm with the pre-norm block's residual add fused, on ``llmkernels.rms_norm``.

``ops="torch"`` runs PyTorch's own path (``x + residual``, then ``F.rms_norm``): the baseline.
The parameter is named ``weight``, as in ``torch.nn.RMSNorm``, so state dicts load either way.
"""

from __future__ import annotations

import contextlib

import torch

import llmkernels
from llmkernels import backends
from llmkernels.nn import recompute, torch_baseline


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

    @contextlib.contextmanager
    def feeding_projections(self, y, h):
        """Yields ``y`` (this norm's output of ``h``) as the projections that read it should take it,
        and, while inside, makes their saves of it keep a recipe that normalises the saved ``h``
        again (the backward already holds h and the weight) instead of a second tensor of h's size.

        Under autocast ``y`` is cast once to the autocast dtype here: each projection would cast it
        again, and save its own copy. ``ops="torch"`` yields ``y`` as it is (the baseline)."""
        if self.ops == "torch":
            yield y
            return
        device = y.device.type
        cast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        cast = cast if cast is not None and cast != y.dtype and y.is_floating_point() else None
        feed = y.to(cast) if cast is not None else y
        backend, h_kept, weight = backends.requested_backend(), h.detach(), self.weight.detach()

        def normalised_again():
            with llmkernels.use_backend(backend):
                again = llmkernels.rms_norm(h_kept, weight, self.eps)
            return again.to(cast) if cast is not None else again

        with recompute.saved(feed, normalised_again, (h, self.weight)):
            yield feed

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, ops={self.ops!r}"
