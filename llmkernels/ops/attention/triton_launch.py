"""Host-side helpers shared by the Triton attention launchers (forward and backward): dot
precision, autotune keys and tile lists, the score arguments every kernel takes, and ``launch``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os

import torch
import triton

_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
_LOG2E = 1.4426950408889634


def dot_precision(dtype: torch.dtype) -> str:
    """Input precision for tl.dot: IEEE fp32 unless torch allows tf32 (16-bit inputs ignore it)."""
    if dtype != torch.float32:
        return "tf32"
    tf32 = torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != "highest"
    return "tf32" if tf32 else "ieee"


def seq_bucket(n: int) -> int:
    """Autotune key for a sequence length: powers of two, so varying lengths do not retune each call."""
    return triton.next_power_of_2(max(int(n), 1))


def block_d(head_dim: int) -> int:
    return max(16, triton.next_power_of_2(head_dim))


def score_args(scale, softcap, alibi_slopes, key_padding_mask, q):
    """Flags and scalars shared by every kernel launch; dummy pointers for absent tensors."""
    has_softcap = softcap is not None and softcap > 0
    slopes = alibi_slopes if alibi_slopes is not None else q
    kpm = key_padding_mask.view(torch.uint8) if key_padding_mask is not None else q
    scalars = dict(
        qk_scale=float(scale) * _LOG2E,
        cap_in=float(scale) / float(softcap) if has_softcap else 0.0,
        cap_out=float(softcap) * _LOG2E if has_softcap else 0.0,
    )
    flags = dict(
        HAS_SOFTCAP=has_softcap,
        HAS_ALIBI=alibi_slopes is not None,
        HAS_KPM=key_padding_mask is not None,
    )
    return slopes, kpm, scalars, flags


def mask_flags(causal, window_left, window_right):
    return dict(IS_CAUSAL=bool(causal), HAS_WL=window_left >= 0, HAS_WR=window_right >= 0)


_AUTOTUNE_KEY = [
    "sq_bucket", "sk_bucket", "BLOCK_D", "IS_CAUSAL", "HAS_WL", "HAS_WR",
    "HAS_SOFTCAP", "HAS_ALIBI", "HAS_KPM", "PRECISION",
]


# IEEE fp32 dots run on FMA units, not tensor cores: large tiles there spill heavily, small ones not.
_IEEE_TILES = {
    64: [(32, 32, 4, 2), (16, 32, 4, 2)],
    128: [(32, 32, 4, 2), (16, 32, 4, 2)],
    256: [(16, 32, 4, 1), (16, 16, 4, 1)],
}


@dataclasses.dataclass(frozen=True)
class TileTable:
    """A kernel's autotune tiles: (BLOCK_M, BLOCK_N, warps, stages) per BLOCK_D list (64 serves
    BLOCK_D 16..64) for 16-bit inputs and tf32 fp32 (IEEE fp32 takes _IEEE_TILES), and the tiles
    withheld on a card: ``not_on[(capability, kind, list)]`` with kind "16bit", "fp32" (tf32) or
    "ieee", from `make cuda-check` (benchmarks/results/gpu_resources.md): they overflow the card's
    shared memory, or spill where another candidate does not."""

    by_head_dim: dict
    not_on: dict = dataclasses.field(default_factory=dict)


def _list_key(lists, block_d_: int) -> int:
    return min((k for k in lists if k >= block_d_), default=max(lists))


def autotune_configs(table: TileTable):
    """The union of the tile lists (and the IEEE fp32 ones) as autotuner configs."""
    tiles = dict.fromkeys(t for lists in (table.by_head_dim, _IEEE_TILES) for ts in lists.values() for t in ts)
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in tiles]


def dtype_kind(dtype_name: str, precision: str) -> str:
    """"16bit", "fp32" (tf32 dots) or "ieee": which tiles and exclusions apply."""
    if precision == "ieee":
        return "ieee"
    return "fp32" if dtype_name in ("float32", "fp32") else "16bit"


def checked_capability(capability: int | None) -> int | None:
    """The checked target (80, 90) whose exclusions a card takes: sm_86/89 take sm_80's, newer take sm_90's."""
    if capability is None:
        return None
    return 90 if capability >= 90 else 80


def candidate_tiles(table: TileTable, block_d_: int, kind: str, capability: int | None = None):
    """The tiles the autotuner may pick for this BLOCK_D and dtype kind (dtype_kind) on a card of
    this compute capability (major * 10 + minor; None: any card): what the launch prunes to, and
    what tools/triton_check.py compiles and holds to its rules."""
    lists = _IEEE_TILES if kind == "ieee" else table.by_head_dim
    key = _list_key(lists, block_d_)
    withheld = table.not_on.get((checked_capability(capability), kind, key), ())
    return [t for t in lists[key] if t not in withheld]


def _capability() -> int | None:
    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability()
    return major * 10 + minor


def head_dim_prune(table: TileTable):
    """Benchmark only candidate_tiles for this BLOCK_D, dtype, dot precision and card."""

    def prune(configs_, named_args, **kwargs):
        d = kwargs.get("BLOCK_D", named_args.get("BLOCK_D", 64))
        precision = kwargs.get("PRECISION", named_args.get("PRECISION"))
        q = named_args.get("q_ptr")
        kind = dtype_kind(str(q.dtype).removeprefix("torch.") if q is not None else "float16", precision)
        tiles = candidate_tiles(table, d, kind, _capability())
        kept = [
            c for c in configs_
            if (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) in tiles
        ]
        return kept or configs_[-1:]

    return prune


_TUNED = {}


def launch(kernel, table: TileTable, grid, *args, **kwargs):
    """Run kernel[grid]: under the interpreter with one 16x16 tile (tests stay fast), on a GPU
    through an autotuner built at the first launch (Triton 3.2 builds one only with an active
    driver, so building it at import would break importing on a machine without a GPU)."""
    if _INTERPRET:
        kernel[grid](*args, BLOCK_M=16, BLOCK_N=16, **kwargs)
        return
    tuned = _TUNED.get(kernel)
    if tuned is None:
        tuned = _TUNED[kernel] = triton.autotune(
            configs=autotune_configs(table),
            key=_AUTOTUNE_KEY,
            prune_configs_by={"early_config_prune": head_dim_prune(table)},
        )(kernel)
    tuned[grid](*args, **kwargs)


def device_guard(t):
    """Triton launches on the current CUDA device: make it the tensor's."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()
