"""The attention kernels' compile cases for tools/triton_check.py (see ops/common/triton_cases.py).

Taken from the launchers' own tables: the tile lists (_FWD_TILES, _DKDV_TILES, _DQ_TILES, and
the IEEE-fp32 ones) through ``candidate_tiles``, the same function the autotuner's prune calls;
BLOCK_D through ``block_d`` over the GPU head dims; the prep kernel's PREP_BLOCK_M.

What compiles (the CI budget: a fresh clone compiles all of it in a few minutes on two cores),
per target: every candidate tile of every kernel for bf16 and fp32 (tf32 and IEEE lists) at head
dims 64, 128 and 256, so that the spill rule sees each launcher choice whole; fp16 and BLOCK_D
16/32 at their first candidate only, as their resources are bounded by those compiled in full
(fp16 shares bf16's layouts and instruction shapes; BLOCK_D 16/32 take the 64 list's tiles with a
narrower head). Switches (masks, softcap, ALiBi, key padding): all on everywhere, which holds the
most code and needs the most registers; on the hot paths (bf16, head dims 64 and 128) every
candidate also with none on and with IS_CAUSAL alone, and at head dim 128 the first candidate
with each switch alone.
"""

from __future__ import annotations

from llmkernels.ops.attention import GPU_HEAD_DIMS
from llmkernels.ops.common.triton_cases import DTYPES, TritonCase, switch_sets

SWITCHES = ("IS_CAUSAL", "HAS_WL", "HAS_WR", "HAS_SOFTCAP", "HAS_ALIBI", "HAS_KPM")
ALL_ON = dict.fromkeys(SWITCHES, True)
# dot_precision: 16-bit inputs always pass "tf32" (ignored by tl.dot); fp32 is IEEE unless torch allows tf32
PRECISIONS = {"fp16": ("tf32",), "bf16": ("tf32",), "fp32": ("ieee", "tf32")}
HOT = {"dtype": "bf16", "block_d": (64, 128)}

_SCALARS = ("qk_scale", "cap_in", "cap_out", "scale")
_STRIDES = ("sqb", "sqh", "sqm", "skb", "skh", "skn", "svb", "svh", "svn", "sob", "soh", "som",
            "sdb", "sdh", "sdm")
_DIVISIBLE = _STRIDES + ("head_dim", "sq_pad")


def block_ds() -> list[int]:
    from llmkernels.ops.attention.triton_launch import block_d

    low, high = GPU_HEAD_DIMS
    return sorted({block_d(h) for h in range(low, high + 1)})


def _pointers(flags: dict) -> tuple[tuple[str, str], ...]:
    """Pointer types other than the input dtype; absent slopes/mask get q as a dummy pointer."""
    fp32 = ("lse_ptr", "lse2_ptr", "delta_ptr")
    ptrs = {name: "*fp32" for name in fp32}
    if flags.get("HAS_ALIBI"):
        ptrs["slopes_ptr"] = "*fp32"
    if flags.get("HAS_KPM"):
        ptrs["kpm_ptr"] = "*u8"
    return tuple(sorted(ptrs.items()))


def _settings(hot: bool, singles: bool) -> list[dict]:
    if not hot:
        return [ALL_ON]
    if singles:
        return switch_sets(SWITCHES)
    return switch_sets((), ({}, {"IS_CAUSAL": True}, ALL_ON))


def _in_full(d: int, dtype: str) -> bool:
    """Whether every candidate compiles (else the first only): see the module's docstring."""
    return d >= 64 and dtype != "fp16"


def _tiled_kernels():
    from llmkernels.ops.attention import triton_backward, triton_kernels

    return (
        ("llmkernels.ops.attention.triton_kernels", "_attn_fwd_kernel", triton_kernels._FWD_TILES),
        ("llmkernels.ops.attention.triton_backward", "_attn_bwd_dkdv_kernel", triton_backward._DKDV_TILES),
        ("llmkernels.ops.attention.triton_backward", "_attn_bwd_dq_kernel", triton_backward._DQ_TILES),
    )


def cases(capability: int):
    from llmkernels.ops.attention.triton_backward import PREP_BLOCK_M
    from llmkernels.ops.attention.triton_launch import candidate_tiles, dtype_kind

    for module, kernel, tiles in _tiled_kernels():
        for d in block_ds():
            for dtype in DTYPES:
                for precision in PRECISIONS[dtype]:
                    candidates = candidate_tiles(tiles, d, dtype_kind(dtype, precision), capability)
                    hot = dtype == HOT["dtype"] and d in HOT["block_d"]
                    for rank, (m, n, warps, stages) in enumerate(candidates if _in_full(d, dtype) else candidates[:1]):
                        for flags in _settings(hot, singles=rank == 0 and d == max(HOT["block_d"])):
                            flags = {**dict.fromkeys(SWITCHES, False), **flags}
                            on = ",".join(k for k, v in flags.items() if v) or "-"
                            yield TritonCase(
                                module, kernel, dtype,
                                constexprs=tuple({**flags, "PRECISION": precision, "BLOCK_M": m,
                                                  "BLOCK_N": n, "BLOCK_D": d}.items()),
                                num_warps=warps, num_stages=stages,
                                pointers=_pointers(flags), floats=_SCALARS, divisible=_DIVISIBLE,
                                choice=f"{kernel} D={d} {dtype}/{precision} {on}",
                                hot=hot,
                            )
    for d in block_ds():
        for dtype in DTYPES:
            yield TritonCase(
                "llmkernels.ops.attention.triton_backward", "_attn_bwd_prep_kernel", dtype,
                constexprs=(("BLOCK_M", PREP_BLOCK_M), ("BLOCK_D", d)),
                pointers=_pointers({}), divisible=_DIVISIBLE,
            )
