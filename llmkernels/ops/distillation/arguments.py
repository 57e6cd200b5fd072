"""Validation of distillation arguments, shared by the wrappers, the ops and their fake kernels
(and by the linear variants, which check their projections themselves and their logits here on
zero-stride stand-ins)."""

from __future__ import annotations

import torch

from llmkernels.ops.common.checks import (
    FLOAT_DTYPES, INDEX_DTYPES, assert_on_device, can_check_values, check_same_device, check_tensor, is_finite_number, is_symbolic,
)
from llmkernels.ops.cross_entropy.arguments import REDUCTIONS


# Logits are divided by the temperature in float32: below this floor, logits of ordinary size
# (up to ~3e8) would overflow to inf and every backend would return NaN or inf. Above it, a
# temperature near 0 is well defined (the divergence of the argmax distributions).
MIN_TEMPERATURE = 1e-30


def check_options(temperature, beta, hard_weight, reduction, softcap, has_target) -> None:
    if isinstance(temperature, bool) or not (isinstance(temperature, (int, float)) or is_symbolic(temperature)) or not (
        is_finite_number(temperature) and temperature >= MIN_TEMPERATURE
    ):
        raise ValueError(
            f"temperature must be a finite number >= {MIN_TEMPERATURE} (logits / temperature must not overflow "
            f"float32); got {temperature!r}"
        )
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not (0.0 <= beta <= 1.0):
        raise ValueError(f"beta must lie in [0, 1] (0: forward KL, 1: reverse KL); got {beta!r}")
    if isinstance(hard_weight, bool) or not isinstance(hard_weight, (int, float)) or not (0.0 <= hard_weight <= 1.0):
        raise ValueError(f"hard_weight must lie in [0, 1]; got {hard_weight!r}")
    if hard_weight != 0.0 and not has_target:
        raise ValueError(f"hard_weight is {hard_weight} but no target was given; the hard part needs a target")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")
    if softcap is not None and not (is_finite_number(softcap) and softcap >= 0):
        raise ValueError(f"softcap must be None, 0 (off) or a finite positive number; got {softcap!r}")


def check_target(target, rows: int, classes: int, ignore_index: int, like: torch.Tensor, name: str = "student_logits") -> None:
    if target is None:
        return
    check_tensor("target", target)
    if target.is_floating_point():
        raise ValueError(f"target must hold class indices (int64 or int32); got {target.dtype}")
    check_tensor("target", target, ndims=(1,), dtypes=INDEX_DTYPES)
    check_same_device("target", target, name, like)
    if target.shape[0] != rows:
        raise ValueError(f"target has {target.shape[0]} rows but {name} has {rows}")
    if can_check_values(target) and target.numel():
        valid = target[target != ignore_index]
        if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= classes):
            raise ValueError(
                f"target values must lie in [0, {classes}) or equal ignore_index ({ignore_index}); "
                f"got values in [{int(valid.min())}, {int(valid.max())}]"
            )
    else:
        assert_on_device(target, lambda: ((target >= 0) & (target < classes)) | (target == ignore_index),
                         f"target values must lie in [0, {classes}) or equal ignore_index ({ignore_index})")


def check_logits(name: str, logits) -> None:
    check_tensor(name, logits, ndims=(2,), dtypes=FLOAT_DTYPES)
    if logits.shape[1] == 0:
        raise ValueError(f"{name} must have at least one column (vocabulary); got shape {tuple(logits.shape)}")


def check_arguments(student, teacher, target, temperature, beta, hard_weight, ignore_index, reduction, softcap) -> None:
    """student (N, Vs) and teacher (N, Vt) logits as the op sees them (flattened rows)."""
    check_logits("student_logits", student)
    check_logits("teacher_logits", teacher)
    check_same_device("teacher_logits", teacher, "student_logits", student)
    if teacher.shape[0] != student.shape[0]:
        raise ValueError(
            f"teacher_logits has {teacher.shape[0]} rows (tokens) but student_logits has {student.shape[0]}; "
            "they must match"
        )
    check_options(temperature, beta, hard_weight, reduction, softcap, target is not None)
    check_target(target, student.shape[0], student.shape[1], ignore_index, student)


def check_k(k, classes: int, name: str = "logits") -> None:
    if isinstance(k, bool) or not isinstance(k, (int, torch.SymInt)) or not (1 <= k <= classes):
        raise ValueError(f"k must be an int in [1, {classes}] ({name}' vocabulary); got {k!r}")


def check_topk_teacher(student, teacher_ids, teacher_logprobs, name: str = "student_logits") -> None:
    """Shapes, dtypes and (for CPU tensors) values of a stored top-k teacher."""
    rows, classes = student.shape
    check_tensor("teacher_ids", teacher_ids, ndims=(2,), dtypes=INDEX_DTYPES)
    check_tensor("teacher_logprobs", teacher_logprobs, ndims=(2,), dtypes=FLOAT_DTYPES)
    check_same_device("teacher_ids", teacher_ids, name, student)
    check_same_device("teacher_logprobs", teacher_logprobs, name, student)
    if teacher_ids.shape[0] != rows:
        raise ValueError(f"teacher_ids has {teacher_ids.shape[0]} rows (tokens) but {name} has {rows}; they must match")
    if teacher_logprobs.shape != teacher_ids.shape:
        raise ValueError(
            f"teacher_logprobs must have teacher_ids' shape {tuple(teacher_ids.shape)}; got {tuple(teacher_logprobs.shape)}"
        )
    check_k(teacher_ids.shape[1], classes, name)
    if can_check_values(teacher_ids) and teacher_ids.numel():
        low, high = int(teacher_ids.min()), int(teacher_ids.max())
        if low < 0 or high >= classes:
            raise ValueError(f"teacher_ids must lie in [0, {classes}) ({name}' vocabulary); got values in [{low}, {high}]")
        ordered = teacher_ids.sort(dim=-1).values
        if bool((ordered[:, 1:] == ordered[:, :-1]).any()):
            raise ValueError("teacher_ids must hold k distinct token ids per row; got a repeated id")
    else:
        assert_on_device(teacher_ids, lambda: (teacher_ids >= 0) & (teacher_ids < classes),
                         f"teacher_ids must lie in [0, {classes}) ({name}' vocabulary)")
    if can_check_values(teacher_logprobs) and teacher_logprobs.numel():
        if bool(teacher_logprobs.isnan().any()):
            raise ValueError("teacher_logprobs must not hold NaN")
        if bool((teacher_logprobs > 0).any()):
            raise ValueError(
                f"teacher_logprobs must be log-probabilities (<= 0); got a maximum of {float(teacher_logprobs.max())}"
            )


def check_topk_arguments(student, teacher_ids, teacher_logprobs, target, temperature, beta, hard_weight, ignore_index,
                         reduction, softcap) -> None:
    check_logits("student_logits", student)
    check_topk_teacher(student, teacher_ids, teacher_logprobs)
    check_options(temperature, beta, hard_weight, reduction, softcap, target is not None)
    check_target(target, student.shape[0], student.shape[1], ignore_index, student)
