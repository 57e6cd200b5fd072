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
    """``forward(x, residual=None, *, out_dtype=None)``: y = RMSNorm(h) * weight with h = x
    (+ residual); returns y, or ``(y, h)`` when ``residual`` is given (h is the block's new
    residual stream). x and residual may differ in dtype: h has the dtype ``x + residual`` would
    have. y has ``out_dtype`` (default h's dtype): ``projection_dtype`` names the one the
    projections reading y would cast it to, so the norm writes it so in the same pass."""

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

    def forward(self, x, residual=None, *, out_dtype=None):
        if self.ops == "torch":
            out = torch_baseline.rms_norm(x, self.weight, self.eps, residual)
            if out_dtype is None:
                return out
            return out.to(out_dtype) if residual is None else (out[0].to(out_dtype), out[1])
        return llmkernels.rms_norm(x, self.weight, self.eps, residual=residual, out_dtype=out_dtype)

    def projection_dtype(self, x):
        """The dtype the projections reading this norm's output of ``x`` would cast it to (the
        autocast dtype of x's device), or None where they take it as it is (no autocast, or
        ``ops="torch"``, whose baseline lets each projection cast on its own)."""
        device = x.device.type
        if self.ops == "torch" or not torch.is_autocast_enabled(device) or not x.is_floating_point():
            return None
        return torch.get_autocast_dtype(device)

    @contextlib.contextmanager
    def feeding_projections(self, y, h):
        """Yields ``y`` (this norm's output of ``h``) as the projections that read it should take it,
        and, while inside, makes their saves of it keep a recipe that normalises the saved ``h``
        again (the backward already holds h and the weight) instead of a second tensor of h's size.

        Under autocast ``y`` should already have ``projection_dtype`` (``forward(...,
        out_dtype=...)``); one of another dtype is cast once here: each projection would cast it
        again, and save its own copy. ``ops="torch"`` yields ``y`` as it is (the baseline)."""
        if self.ops == "torch":
            yield y
            return
        cast = self.projection_dtype(y)
        feed = y.to(cast) if cast is not None and cast != y.dtype else y
        backend, h_kept, weight = backends.requested_backend(), h.detach(), self.weight.detach()

        def normalised_again():
            # The float32 result rounded once into feed's dtype: the same bits as the forward's y
            # (or its cast), which normalised this same stored h.
            with llmkernels.use_backend(backend):
                return llmkernels.rms_norm(h_kept, weight, self.eps, out_dtype=feed.dtype)

        with recompute.saved(feed, normalised_again, (h, self.weight)):
            yield feed

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, ops={self.ops!r}"
