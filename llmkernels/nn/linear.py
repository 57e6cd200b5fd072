"""A linear layer on the ``linear`` op: ``torch.nn.Linear``'s parameters, checkpoints and init."""

from __future__ import annotations

import torch
from torch.nn import functional as F

import llmkernels
from llmkernels.nn import torch_baseline


class Linear(torch.nn.Linear):
    """``torch.nn.Linear`` whose product runs on ``llmkernels.linear`` under ``ops="llmkernels"``
    (on a CPU, llmkernels' packed GEMM for the forward and both backward products) and on
    ``F.linear`` under ``ops="torch"``. The parameters (``weight``, ``bias``), their
    initialisation and the state dict are ``nn.Linear``'s, and it is one (``isinstance``), so a
    checkpoint loads either way."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, ops: str = "llmkernels",
                 device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.ops = torch_baseline.check_ops(ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ops == "torch":
            return F.linear(x, self.weight, self.bias)
        return llmkernels.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, ops={self.ops!r}"
