"""The cross-entropy kernel's compile cases for tools/triton_check.py (see
ops/common/triton_cases.py): every (BLOCK, num_warps) the launcher's ``launch_config`` can choose
(powers of two up to MAX_BLOCK, which any vocabulary past MAX_BLOCK classes gets), through
``cover``; the widest also with the backward's HAS_GRAD alone."""

from __future__ import annotations

from llmkernels.ops.common.triton_cases import TritonCase, cover, powers_of_two

MODULE = "llmkernels.ops.cross_entropy.triton_kernels"
SWITCHES = ("HAS_GRAD", "HAS_WEIGHT", "HAS_SOFTCAP", "HAS_SMOOTHING")
_FLOATS = ("label_smoothing", "z_loss", "softcap", "ce_scale", "z_scale")


def cases(capability: int):
    from llmkernels.ops.cross_entropy.triton_kernels import MAX_BLOCK, launch_config

    shapes = sorted({launch_config(classes) for classes in powers_of_two(1, 2 * MAX_BLOCK)})
    for (block, warps), dtype, flags in cover(shapes, lambda _: SWITCHES, max(shapes), ({"HAS_GRAD": True},)):
        grad = "*" + dtype if flags["HAS_GRAD"] else "*fp32"  # absent: lse stands in
        yield TritonCase(
            MODULE, "_cross_entropy_row_kernel", dtype,
            constexprs=(*flags.items(), ("BLOCK", block)), num_warps=warps,
            pointers=(("target_ptr", "*i64"), ("weight_ptr", "*fp32"), ("loss_ptr", "*fp32"),
                      ("lse_ptr", "*fp32"), ("grad_ptr", grad)),
            floats=_FLOATS,
        )
