"""The sinusoidal kernel's compile cases for tools/triton_check.py (see
ops/common/triton_cases.py): every BLOCK the launcher's ``block_size`` can choose, through
``cover`` (every block in bf16 with position_ids, the widest in every dtype, with and without)."""

from __future__ import annotations

from llmkernels.ops.common.triton_cases import TritonCase, cover, powers_of_two

MODULE = "llmkernels.ops.sinusoidal.triton_kernels"


def cases(capability: int):
    from llmkernels.ops.sinusoidal.triton_kernels import MAX_BLOCK, block_size

    blocks = sorted({block_size(pairs) for pairs in powers_of_two(1, 2 * MAX_BLOCK)})
    for block, dtype, flags in cover(blocks, lambda _: ("HAS_POS",), max(blocks)):
        yield TritonCase(
            MODULE, "_add_encoding_kernel", dtype,
            constexprs=(*flags.items(), ("BLOCK", block)),
            pointers=(("inv_freq_ptr", "*fp32"), ("pos_ptr", "*i64" if flags["HAS_POS"] else "*fp32")),
            floats=("scale",), divisible=("d_model", "sxb", "sxs", "sob", "sos"),
        )
