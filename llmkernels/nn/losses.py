"""Loss modules with torch's constructor arguments, backed by the fused llmkernels ops.

``ops="torch"`` computes the same loss with ``F.cross_entropy`` (on full float32 logits for the
linear one): the baseline. It has no ``z_loss``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import llmkernels
from llmkernels.nn import torch_baseline


class CrossEntropyLoss(torch.nn.Module):
    """``torch.nn.CrossEntropyLoss`` (class-index targets) plus ``z_loss`` and ``softcap``."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0, *, z_loss=0.0, softcap=None,
                 ops="llmkernels"):
        super().__init__()
        self.ops = torch_baseline.check_ops(ops)
        torch_baseline.unsupported(ops, z_loss=z_loss)
        self.register_buffer("weight", weight)
        self.ignore_index, self.reduction, self.label_smoothing = ignore_index, reduction, label_smoothing
        self.z_loss, self.softcap = z_loss, softcap

    def forward(self, input, target):
        if self.ops == "torch":
            return torch_baseline.cross_entropy(input, target, self.weight, self.ignore_index, self.reduction,
                                                self.label_smoothing, self.softcap)
        return llmkernels.cross_entropy(
            input, target, self.weight, self.ignore_index, self.reduction, self.label_smoothing,
            z_loss=self.z_loss, softcap=self.softcap,
        )


class LinearCrossEntropyLoss(torch.nn.Module):
    """``forward(input, linear_weight, target, linear_bias=None)``: the loss of the output projection
    without materialising the logits (see ``llmkernels.linear_cross_entropy``). ``chunk_size`` and
    ``accum_dtype`` apply to the fused op only."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0, *, z_loss=0.0,
                 softcap=None, chunk_size=None, accum_dtype=torch.float32, ops="llmkernels"):
        super().__init__()
        self.ops = torch_baseline.check_ops(ops)
        torch_baseline.unsupported(ops, z_loss=z_loss)
        self.register_buffer("weight", weight)
        self.ignore_index, self.reduction, self.label_smoothing = ignore_index, reduction, label_smoothing
        self.z_loss, self.softcap, self.chunk_size, self.accum_dtype = z_loss, softcap, chunk_size, accum_dtype

    def forward(self, input, linear_weight, target, linear_bias=None):
        if self.ops == "torch":
            return torch_baseline.cross_entropy(F.linear(input, linear_weight, linear_bias), target, self.weight,
                                                self.ignore_index, self.reduction, self.label_smoothing, self.softcap)
        return llmkernels.linear_cross_entropy(
            input, linear_weight, target, linear_bias=linear_bias, weight=self.weight, reduction=self.reduction,
            ignore_index=self.ignore_index, label_smoothing=self.label_smoothing, z_loss=self.z_loss,
            softcap=self.softcap, chunk_size=self.chunk_size, accum_dtype=self.accum_dtype,
        )
