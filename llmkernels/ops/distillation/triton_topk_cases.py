"""The top-k kernels' compile cases for tools/triton_check.py (yielded by triton_cases.py, the
family's registry entry): the rows kernel at every (BLOCK, num_warps) of the cross-entropy
``launch_config`` through ``cover`` in the generalised JSD (the most code), the widest also with
HAS_GRAD alone, and the forward and reverse KL at the widest in every dtype with every switch on;
topk_logprobs at every (KCHUNK, BLOCK, num_warps) its launcher can choose, in the representative
dtype with the softcap, and the widest in every dtype with and without."""

from __future__ import annotations

from llmkernels.ops.common.triton_cases import DTYPES, REPRESENTATIVE, TritonCase, cover, powers_of_two

MODULE = "llmkernels.ops.distillation.triton_topk"
SWITCHES = ("HAS_TARGET", "HAS_GRAD", "HAS_SOFTCAP", "HAS_TAIL")
_ROW_FLOATS = ("inv_t", "soft_factor", "beta", "log_beta", "log_rest", "softcap", "c_soft", "c_hard", "tail_exact")


def _rows_case(dtype, flags, mode, block, warps, kblock):
    grad = "*" + dtype if flags["HAS_GRAD"] else "*fp32"
    return TritonCase(
        MODULE, "_topk_rows_kernel", dtype,
        constexprs=(*flags.items(), ("MODE", mode), ("BLOCK", block), ("KBLOCK", kblock)), num_warps=warps,
        pointers=(("ids_ptr", "*i64"), ("lp_ptr", "*fp32"), ("target_ptr", "*i64"), ("soft_ptr", "*fp32"),
                  ("hard_ptr", "*fp32"), ("grad_ptr", grad), ("scratch_ptr", "*fp32")),
        floats=_ROW_FLOATS,
    )


def _logprobs_case(dtype, has_softcap, kchunk, block, warps):
    return TritonCase(
        MODULE, "_topk_logprobs_kernel", dtype,
        constexprs=(("HAS_SOFTCAP", has_softcap), ("KCHUNK", kchunk), ("BLOCK", block), ("ROWS", 1)),
        num_warps=warps, pointers=(("ids_ptr", "*i32"), ("out_ptr", "*fp32")), floats=("inv_t", "softcap"),
    )


def cases(capability: int):
    from llmkernels.ops.cross_entropy.triton_kernels import MAX_BLOCK, launch_config
    from llmkernels.ops.distillation.triton_kernels import _JSD, MODES
    from llmkernels.ops.distillation.triton_topk import ID_BLOCK, MAX_KCHUNK, topk_logprobs_config

    shapes = sorted({launch_config(classes) for classes in powers_of_two(1, 2 * MAX_BLOCK)})
    widest = max(shapes)
    for (block, warps), dtype, flags in cover(shapes, lambda _: SWITCHES, widest, ({"HAS_GRAD": True},)):
        yield _rows_case(dtype, flags, _JSD, block, warps, ID_BLOCK)
    for mode in MODES:
        if mode != _JSD:
            for dtype in DTYPES:
                yield _rows_case(dtype, dict.fromkeys(SWITCHES, True), mode, *widest, ID_BLOCK)

    configs = sorted({topk_logprobs_config(classes, k) for classes in powers_of_two(1, 2 * MAX_BLOCK)
                      for k in powers_of_two(1, MAX_KCHUNK) if k <= classes})
    for config in configs:
        if config != configs[-1]:
            yield _logprobs_case(REPRESENTATIVE, True, *config)
    for dtype in DTYPES:
        for has_softcap in (False, True):
            yield _logprobs_case(dtype, has_softcap, *configs[-1])
