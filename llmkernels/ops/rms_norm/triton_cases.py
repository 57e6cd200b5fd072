"""The rms_norm kernels' compile cases for tools/triton_check.py (see ops/common/triton_cases.py):
every BLOCK (with its num_warps) the launchers' ``block_columns`` can choose, powers of two from
MIN_BLOCK to MAX_BLOCK, through ``cover``, in both layouts (ONE_BLOCK off and on); the partial-sum
kernel at its one block; and the autocast mix (bf16 x, y, grad_y and dx beside a float32 residual, h and dresidual) at every BLOCK."""

from __future__ import annotations

from llmkernels.ops.common.triton_cases import TritonCase, cover, powers_of_two

MODULE = "llmkernels.ops.rms_norm.triton_kernels"
FORWARD_SWITCHES = ("HAS_RESIDUAL", "HAS_WEIGHT")
BACKWARD_SWITCHES = ("HAS_GRAD_H", "HAS_WEIGHT", "WEIGHT_GRAD", "HAS_DRESIDUAL")
_F32 = "*fp32"


# Both layouts at every BLOCK: the sweeps are what the launcher picks while ONE_BLOCK_ROWS is off,
# and ONE_BLOCK what it picks for a row that fits once the switch is on.
LAYOUTS = (False, True)


def cases(capability: int):
    from llmkernels.ops.rms_norm.triton_kernels import MAX_BLOCK, MIN_BLOCK, SUM_BLOCK, block_columns, warps

    blocks = sorted({block_columns(dim) for dim in powers_of_two(1, 2 * MAX_BLOCK)})
    assert blocks == powers_of_two(MIN_BLOCK, MAX_BLOCK)
    for block, dtype, flags in cover(blocks, lambda _: FORWARD_SWITCHES, MAX_BLOCK):
        for one in LAYOUTS:
            yield TritonCase(
                MODULE, "_rms_norm_forward_kernel", dtype,
                constexprs=(*flags.items(), ("ONE_BLOCK", one), ("BLOCK", block)), num_warps=warps(block),
                pointers=(("w_ptr", _F32), ("rstd_ptr", _F32)), floats=("eps",),
            )
    for block, dtype, flags in cover(blocks, lambda _: BACKWARD_SWITCHES, MAX_BLOCK):
        for one in LAYOUTS:
            yield TritonCase(
                MODULE, "_rms_norm_backward_kernel", dtype,
                constexprs=(*flags.items(), ("ONE_BLOCK", one), ("BLOCK", block)), num_warps=warps(block),
                pointers=(("w_ptr", _F32), ("rstd_ptr", _F32), ("partial_ptr", _F32)),
            )
    for block in blocks:  # the float32 operands of the autocast mix; the others bf16
        for one in LAYOUTS:
            yield TritonCase(
                MODULE, "_rms_norm_forward_kernel", "bf16",
                constexprs=(("HAS_RESIDUAL", True), ("HAS_WEIGHT", True), ("ONE_BLOCK", one), ("BLOCK", block)),
                num_warps=warps(block),
                pointers=(("r_ptr", _F32), ("h_ptr", _F32), ("w_ptr", _F32), ("rstd_ptr", _F32)), floats=("eps",),
            )
            yield TritonCase(
                MODULE, "_rms_norm_backward_kernel", "bf16",
                constexprs=(*((flag, True) for flag in BACKWARD_SWITCHES), ("ONE_BLOCK", one), ("BLOCK", block)),
                num_warps=warps(block),
                pointers=(("gh_ptr", _F32), ("inp_ptr", _F32), ("dres_ptr", _F32), ("w_ptr", _F32),
                          ("rstd_ptr", _F32), ("partial_ptr", _F32)),
            )
    yield TritonCase(
        MODULE, "_rms_norm_sum_partials_kernel", "fp32", constexprs=(("BLOCK", SUM_BLOCK),),
        pointers=(("partial_ptr", _F32), ("dweight_ptr", _F32)),
    )
