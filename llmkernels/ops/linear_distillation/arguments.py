"""Validation of the linear distillation arguments: the projections here, the distillation options
by the distillation family on zero-stride stand-ins for the logits (shape (N, V), no memory)."""

from __future__ import annotations

import torch

from llmkernels.ops.common.checks import FLOAT_DTYPES, check_same_device
from llmkernels.ops.distillation.arguments import check_arguments as check_logit_arguments
from llmkernels.ops.distillation.arguments import check_k, check_topk_arguments
from llmkernels.ops.linear_cross_entropy.arguments import check_accum_dtype, check_projection  # noqa: F401 (re-exported)

STUDENT = ("student_input", "student_weight", "student_bias")
TEACHER = ("teacher_input", "teacher_weight", "teacher_bias")


def logits_like(input, weight):
    return input.new_empty(()).expand(input.shape[0], weight.shape[0])


def check_arguments(s_input, s_weight, s_bias, t_input, t_weight, t_bias, target, temperature, beta, hard_weight,
                    ignore_index, reduction, softcap) -> None:
    check_projection(s_input, s_weight, s_bias, STUDENT)
    check_projection(t_input, t_weight, t_bias, TEACHER)
    check_same_device("teacher_input", t_input, "student_input", s_input)
    if t_input.shape[0] != s_input.shape[0]:
        raise ValueError(
            f"teacher_input has {t_input.shape[0]} rows (tokens) but student_input has {s_input.shape[0]}; they must match"
        )
    check_logit_arguments(logits_like(s_input, s_weight), logits_like(t_input, t_weight), target, temperature, beta,
                          hard_weight, ignore_index, reduction, softcap)


def check_topk(s_input, s_weight, s_bias, teacher_ids, teacher_logprobs, target, temperature, beta, hard_weight,
               ignore_index, reduction, softcap) -> None:
    check_projection(s_input, s_weight, s_bias, STUDENT)
    check_topk_arguments(logits_like(s_input, s_weight), teacher_ids, teacher_logprobs, target, temperature, beta,
                         hard_weight, ignore_index, reduction, softcap)


def check_logprobs_arguments(input, weight, bias, k) -> None:
    check_projection(input, weight, bias)
    check_k(k, weight.shape[0], "linear_weight")
