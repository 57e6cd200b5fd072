"""The rotary kernel's compile cases for tools/triton_check.py (see ops/common/triton_cases.py).

Block shapes come from the launcher's ``blocks`` over the GPU head dims (powers of two), full and
half-width rotary (the latter copies the rest of the head: the COPY_REST switches), one head and
many (BLOCK_H at its largest); through ``cover``, the widest being full rotary at the largest
head dim with many heads.
"""

from __future__ import annotations

from llmkernels.ops.attention import GPU_HEAD_DIMS
from llmkernels.ops.common.triton_cases import TritonCase, cover, powers_of_two

MODULE = "llmkernels.ops.rotary.triton_kernels"
SWITCHES = ("HAS_POS", "INTERLEAVED", "CONJUGATE")
COPY_REST = ("COPY_REST_Q", "COPY_REST_K")
HEADS = (1, 128)
_DIVISIBLE = ("head_dim", "sqb", "sqh", "sqs", "soqb", "soqh", "soqs", "skb", "skh", "sks", "sokb", "sokh", "soks")


def cases(capability: int):
    from llmkernels.ops.rotary.triton_kernels import blocks

    shapes = [
        (head_dim, half, heads)
        for head_dim in powers_of_two(*GPU_HEAD_DIMS)
        for half in (head_dim // 2, head_dim // 4)
        for heads in HEADS
    ]

    def names_of(shape):
        head_dim, half, _ = shape
        return SWITCHES + (COPY_REST if 2 * half < head_dim else ())

    widest = (GPU_HEAD_DIMS[1], GPU_HEAD_DIMS[1] // 2, HEADS[-1])
    for (head_dim, half, heads), dtype, flags in cover(shapes, names_of, widest):
        flags = {**dict.fromkeys(SWITCHES + COPY_REST, False), **flags}
        block_h, block_half, block_rest = blocks(heads, half, head_dim)
        yield TritonCase(
            MODULE, "_rotary_kernel", dtype,
            constexprs=(*flags.items(), ("BLOCK_H", block_h), ("BLOCK_HALF", block_half), ("BLOCK_REST", block_rest)),
            pointers=(("cos_ptr", "*fp32"), ("sin_ptr", "*fp32"), ("pos_ptr", "*i64" if flags["HAS_POS"] else "*fp32")),
            divisible=_DIVISIBLE if head_dim % 16 == 0 else (),
        )
