"""Distillation loss modules on the fused llmkernels ops (see ``llmkernels.distillation_loss``).

``ops="torch"`` computes the same loss in plain PyTorch on full logits (the specification's
formulas, autograd for the gradient): the baseline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import llmkernels
from llmkernels.nn import torch_baseline
from llmkernels.ops.distillation import reference


class _Options(torch.nn.Module):
    def __init__(self, temperature=1.0, beta=0.0, hard_weight=0.0, ignore_index=-100, reduction="mean",
                 scale_by_temperature=True, softcap=None, ops="llmkernels"):
        super().__init__()
        self.ops = torch_baseline.check_ops(ops)
        self.temperature, self.beta, self.hard_weight = temperature, beta, hard_weight
        self.ignore_index, self.reduction = ignore_index, reduction
        self.scale_by_temperature, self.softcap = scale_by_temperature, softcap

    def options(self):
        return dict(temperature=self.temperature, beta=self.beta, hard_weight=self.hard_weight,
                    ignore_index=self.ignore_index, reduction=self.reduction,
                    scale_by_temperature=self.scale_by_temperature, softcap=self.softcap)

    def _torch_loss(self, student_logits, rows_fn, target):
        """The plain-PyTorch loss: rows_fn(student (N, V), target (N,)) -> (soft, hard, valid)."""
        row_shape = student_logits.shape[:-1]
        flat_target = None if target is None else target.reshape(-1)
        soft, hard, valid = rows_fn(student_logits.reshape(-1, student_logits.shape[-1]), flat_target)
        loss, _, _ = reference.combine(soft, hard, valid, self.hard_weight, self.reduction)
        return loss.reshape(row_shape) if self.reduction == "none" else loss

    def _rows_args(self):
        return dict(temperature=self.temperature, beta=self.beta, ignore_index=self.ignore_index,
                    scale_by_temperature=self.scale_by_temperature, softcap=self.softcap or None)


class DistillationLoss(_Options):
    """``forward(student_logits, teacher_logits, target=None)``: ``llmkernels.distillation_loss``."""

    def forward(self, student_logits, teacher_logits, target=None):
        if self.ops == "torch":
            teacher = teacher_logits.detach().reshape(-1, teacher_logits.shape[-1])
            return self._torch_loss(student_logits, lambda s, t: reference.distillation_rows(
                s, teacher, t, **self._rows_args()), target)
        return llmkernels.distillation_loss(student_logits, teacher_logits, target, **self.options())


class TopKDistillationLoss(_Options):
    """``forward(student_logits, teacher_ids, teacher_logprobs, target=None)``:
    ``llmkernels.topk_distillation_loss``."""

    def forward(self, student_logits, teacher_ids, teacher_logprobs, target=None):
        if self.ops == "torch":
            k = teacher_ids.shape[-1]
            ids, logprobs = teacher_ids.reshape(-1, k), teacher_logprobs.detach().reshape(-1, k)
            return self._torch_loss(student_logits, lambda s, t: reference.topk_rows(
                s, ids, logprobs, t, **self._rows_args()), target)
        return llmkernels.topk_distillation_loss(student_logits, teacher_ids, teacher_logprobs, target, **self.options())


class LinearDistillationLoss(_Options):
    """``forward(student_input, student_weight, teacher_input, teacher_weight, target=None,
    student_bias=None, teacher_bias=None)``: ``llmkernels.linear_distillation_loss`` (the logits
    never exist). ``chunk_size`` and ``accum_dtype`` apply to the fused op only."""

    def __init__(self, *args, chunk_size=None, accum_dtype=torch.float32, **kwargs):
        super().__init__(*args, **kwargs)
        self.chunk_size, self.accum_dtype = chunk_size, accum_dtype

    def forward(self, student_input, student_weight, teacher_input, teacher_weight, target=None, student_bias=None,
                teacher_bias=None):
        if self.ops == "torch":
            student = F.linear(student_input, student_weight, student_bias)
            teacher = F.linear(teacher_input, teacher_weight, teacher_bias).detach()
            return DistillationLoss.forward(self, student, teacher, target)
        return llmkernels.linear_distillation_loss(
            student_input, student_weight, teacher_input, teacher_weight, target, student_bias=student_bias,
            teacher_bias=teacher_bias, chunk_size=self.chunk_size, accum_dtype=self.accum_dtype, **self.options(),
        )


class LinearTopKDistillationLoss(_Options):
    """``forward(student_input, student_weight, teacher_ids, teacher_logprobs, target=None,
    student_bias=None)``: ``llmkernels.linear_topk_distillation_loss``."""

    def __init__(self, *args, chunk_size=None, accum_dtype=torch.float32, **kwargs):
        super().__init__(*args, **kwargs)
        self.chunk_size, self.accum_dtype = chunk_size, accum_dtype

    def forward(self, student_input, student_weight, teacher_ids, teacher_logprobs, target=None, student_bias=None):
        if self.ops == "torch":
            student = F.linear(student_input, student_weight, student_bias)
            return TopKDistillationLoss.forward(self, student, teacher_ids, teacher_logprobs, target)
        return llmkernels.linear_topk_distillation_loss(
            student_input, student_weight, teacher_ids, teacher_logprobs, target, student_bias=student_bias,
            chunk_size=self.chunk_size, accum_dtype=self.accum_dtype, **self.options(),
        )
