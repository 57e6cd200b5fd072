"""The distillation row kernel's compile cases for tools/triton_check.py (see
ops/common/triton_cases.py): every (BLOCK, num_warps) the launcher can choose (the cross-entropy
``launch_config``, powers of two up to MAX_BLOCK, which any student vocabulary past MAX_BLOCK
gets), through ``cover`` in the generalised JSD (the most code of the three MODEs), the widest also
with the backward's HAS_GRAD alone; the forward and reverse KL MODEs at the widest block in every
dtype with every switch on; then the top-k kernels' cases (triton_topk_cases.py)."""

from __future__ import annotations

from llmkernels.ops.common.triton_cases import DTYPES, TritonCase, cover, powers_of_two

MODULE = "llmkernels.ops.distillation.triton_kernels"
SWITCHES = ("HAS_TARGET", "HAS_GRAD", "HAS_SOFTCAP")
_FLOATS = ("inv_t", "soft_factor", "beta", "log_beta", "log_rest", "softcap", "c_soft", "c_hard")


def _case(dtype, flags, mode, block, warps):
    target = "*i64" if flags["HAS_TARGET"] else "*fp32"  # absent: soft stands in
    grad = "*" + dtype if flags["HAS_GRAD"] else "*fp32"
    return TritonCase(
        MODULE, "_distillation_row_kernel", dtype,
        constexprs=(*flags.items(), ("MODE", mode), ("BLOCK", block)), num_warps=warps,
        pointers=(("target_ptr", target), ("soft_ptr", "*fp32"), ("hard_ptr", "*fp32"), ("grad_ptr", grad)),
        floats=_FLOATS,
    )


def cases(capability: int):
    from llmkernels.ops.cross_entropy.triton_kernels import MAX_BLOCK, launch_config
    from llmkernels.ops.distillation import triton_topk_cases
    from llmkernels.ops.distillation.triton_kernels import _JSD, MODES

    shapes = sorted({launch_config(classes) for classes in powers_of_two(1, 2 * MAX_BLOCK)})
    widest = max(shapes)
    for (block, warps), dtype, flags in cover(shapes, lambda _: SWITCHES, widest, ({"HAS_GRAD": True},)):
        yield _case(dtype, flags, _JSD, block, warps)
    for mode in MODES:
        if mode != _JSD:
            for dtype in DTYPES:
                yield _case(dtype, dict.fromkeys(SWITCHES, True), mode, *widest)
    yield from triton_topk_cases.cases(capability)  # the top-k teacher's kernels (triton_topk.py)
