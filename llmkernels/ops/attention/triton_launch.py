"""Host-side helpers shared by the Triton attention launchers (forward and backward): dot
precision, autotune keys and tile lists, the score arguments every kernel takes, and ``launch``.
"""

from __future__ import annotations

import contextlib
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


def autotune_configs(by_head_dim):
    """The union of the per-head-dim tile lists (and the IEEE fp32 ones) as autotuner configs.

    by_head_dim maps the largest BLOCK_D a list serves (64, 128, 256) to (BLOCK_M, BLOCK_N, warps,
    stages) tiles chosen from sm80/sm90 compiles (few or no register spills, shared memory within
    bounds).
    """
    tiles = dict.fromkeys(t for lists in (by_head_dim, _IEEE_TILES) for ts in lists.values() for t in ts)
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in tiles]


def candidate_tiles(by_head_dim, block_d_: int, precision: str, capability: int | None = None):
    """The (BLOCK_M, BLOCK_N, warps, stages) tiles the autotuner may pick for this BLOCK_D and dot
    precision on a card of this compute capability (major * 10 + minor): what the launch prunes
    to, and what tools/triton_check.py compiles and holds to the spill rule."""
    lists = _IEEE_TILES if precision == "ieee" else by_head_dim
    return list(lists[min((k for k in lists if k >= block_d_), default=max(lists))])


def _capability() -> int | None:
    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability()
    return major * 10 + minor


def head_dim_prune(by_head_dim):
    """Benchmark only candidate_tiles for this BLOCK_D, dot precision and card."""

    def prune(configs_, named_args, **kwargs):
        d = kwargs.get("BLOCK_D", named_args.get("BLOCK_D", 64))
        precision = kwargs.get("PRECISION", named_args.get("PRECISION"))
        tiles = candidate_tiles(by_head_dim, d, precision, _capability())
        kept = [
            c for c in configs_
            if (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) in tiles
        ]
        return kept or configs_[-1:]

    return prune


_TUNED = {}


def launch(kernel, by_head_dim, grid, *args, **kwargs):
    """Run kernel[grid]: under the interpreter with one 16x16 tile (tests stay fast), on a GPU
    through an autotuner built at the first launch (Triton 3.2 builds one only with an active
    driver, so building it at import would break importing on a machine without a GPU)."""
    if _INTERPRET:
        kernel[grid](*args, BLOCK_M=16, BLOCK_N=16, **kwargs)
        return
    tuned = _TUNED.get(kernel)
    if tuned is None:
        tuned = _TUNED[kernel] = triton.autotune(
            configs=autotune_configs(by_head_dim),
            key=_AUTOTUNE_KEY,
            prune_configs_by={"early_config_prune": head_dim_prune(by_head_dim)},
        )(kernel)
    tuned[grid](*args, **kwargs)


def device_guard(t):
    """Triton launches on the current CUDA device: make it the tensor's."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()
