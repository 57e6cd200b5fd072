"""The swiglu kernels' compile cases for tools/triton_check.py (see ops/common/triton_cases.py):
every BLOCK the launchers' ``block_size`` can choose, through ``cover`` (every block in bf16, the
widest in every dtype), for the forward and the backward kernel and every activation."""

from __future__ import annotations

from llmkernels.ops.common.triton_cases import TritonCase, cover, powers_of_two
from llmkernels.ops.swiglu.reference import ACTIVATIONS

MODULE = "llmkernels.ops.swiglu.triton_kernels"
_STRIDES = {
    "_swiglu_forward_kernel": ("cols", "s_gate", "s_up", "s_out"),
    "_swiglu_backward_kernel": ("cols", "s_grad", "s_gate", "s_up", "s_grad_gate", "s_grad_up"),
}


def cases(capability: int):
    from llmkernels.ops.swiglu.triton_kernels import MAX_BLOCK, block_size

    blocks = sorted({block_size(cols) for cols in powers_of_two(1, 2 * MAX_BLOCK)})
    for kernel, divisible in _STRIDES.items():
        for activation in range(len(ACTIVATIONS)):
            for block, dtype, _ in cover(blocks, lambda _: (), max(blocks)):
                yield TritonCase(
                    MODULE, kernel, dtype, constexprs=(("ACTIVATION", activation), ("BLOCK", block)), divisible=divisible,
                )
