"""The (cos, sin) cache for rotary embeddings, with Hugging Face's `rope_scaling` variants.

Each variant reproduces the inverse frequencies and attention scaling of the matching
`transformers` rope initialiser, with the same float32 operations in the same order, so that a
cache built from an HF config equals the cos/sin HF computes (tests compare them bitwise).
`scaling` takes HF's keys. What HF reads from the model config rather than from `rope_scaling`
is taken from the dict too: `max_position_embeddings` (dynamic's pretraining length, and yarn's
and longrope's factor when `factor` is absent) and `original_max_position_embeddings`.
"""

from __future__ import annotations

import math

import torch

ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "llama3", "longrope")


def _base_inv_freq(base: float, dim: int) -> torch.Tensor:
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).to(dtype=torch.float) / dim
    return 1.0 / (base**exponents)


def _require(scaling: dict, key: str, rope_type: str):
    if scaling.get(key) is None:
        raise ValueError(f"scaling[{key!r}] is required for rope_type {rope_type!r}; got {scaling!r}")
    return scaling[key]


def _original_length(scaling: dict, rope_type: str) -> int:
    original = scaling.get("original_max_position_embeddings")
    if original is None:
        original = scaling.get("max_position_embeddings")
    if original is None:
        raise ValueError(
            f"scaling['original_max_position_embeddings'] (or the config's 'max_position_embeddings')"
            f" is required for rope_type {rope_type!r}; got {scaling!r}"
        )
    return original


def _dynamic(base, dim, scaling, seq_len):
    factor = _require(scaling, "factor", "dynamic")
    original = scaling.get("max_position_embeddings") or _original_length(scaling, "dynamic")
    seq_len = max(seq_len, original)
    base = base * ((factor * seq_len / original) - (factor - 1)) ** (dim / (dim - 2))
    return _base_inv_freq(base, dim), 1.0


def _yarn(base, dim, scaling, seq_len):
    original = _original_length(scaling, "yarn")
    factor = scaling.get("factor")
    if factor is None:
        factor = _require(scaling, "max_position_embeddings", "yarn") / original

    def mscale_of(scale, mscale=1):
        return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0

    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:
        mscale, mscale_all_dim = scaling.get("mscale"), scaling.get("mscale_all_dim")
        if mscale and mscale_all_dim:
            attention_factor = float(mscale_of(factor, mscale) / mscale_of(factor, mscale_all_dim))
        else:
            attention_factor = mscale_of(factor)
    beta_fast = scaling.get("beta_fast") or 32
    beta_slow = scaling.get("beta_slow") or 1

    def correction_dim(rotations):
        # The rotary dimension whose wavelength makes `rotations` turns over the original length.
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # a zero-width ramp would divide by zero
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    extrapolation_weight = 1 - ramp
    pos_freqs = base ** (torch.arange(0, dim, 2).to(dtype=torch.float) / dim)
    extrapolated = 1.0 / pos_freqs
    interpolated = 1.0 / (factor * pos_freqs)
    inv_freq = interpolated * (1 - extrapolation_weight) + extrapolated * extrapolation_weight
    return inv_freq, attention_factor


def _llama3(base, dim, scaling, seq_len):
    inv_freq = _base_inv_freq(base, dim)
    factor = _require(scaling, "factor", "llama3")
    low_freq_factor = _require(scaling, "low_freq_factor", "llama3")
    high_freq_factor = _require(scaling, "high_freq_factor", "llama3")
    original = _original_length(scaling, "llama3")
    low_freq_wavelen = original / low_freq_factor
    high_freq_wavelen = original / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (original / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, scaled), 1.0


def _longrope(base, dim, scaling, seq_len):
    original = _original_length(scaling, "longrope")
    long_factor = _require(scaling, "long_factor", "longrope")
    short_factor = _require(scaling, "short_factor", "longrope")
    for key, factors in (("long_factor", long_factor), ("short_factor", short_factor)):
        if len(factors) != dim // 2:
            raise ValueError(
                f"scaling[{key!r}] must have rotary_dim // 2 = {dim // 2} values; got {len(factors)}"
            )
    factor = scaling.get("factor")
    if factor is None:
        factor = _require(scaling, "max_position_embeddings", "longrope") / original
    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:
        if factor <= 1.0:
            attention_factor = 1.0
        else:
            attention_factor = math.sqrt(1 + math.log(factor) / math.log(original))
    # The long factors serve a cache built for sequences past the pretraining length.
    chosen = long_factor if seq_len > original else short_factor
    ext_factors = torch.tensor(chosen, dtype=torch.float32)
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    return 1.0 / (ext_factors * base**exponents), attention_factor


def inverse_frequencies(rotary_dim: int, base: float, scaling: dict | None, seq_len: int):
    """(inv_freq float32 (rotary_dim // 2,), attention_scaling) for the cache of `seq_len` rows."""
    scaling = dict(scaling or {})
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type == "default":
        return _base_inv_freq(base, rotary_dim), 1.0
    if rope_type == "linear":
        return _base_inv_freq(base, rotary_dim) / _require(scaling, "factor", "linear"), 1.0
    compute = {"dynamic": _dynamic, "yarn": _yarn, "llama3": _llama3, "longrope": _longrope}.get(rope_type)
    if compute is None:
        raise ValueError(f"scaling['rope_type'] must be one of {', '.join(ROPE_TYPES)}; got {rope_type!r}")
    return compute(base, rotary_dim, scaling, seq_len)


def rope_cache(
    max_positions: int,
    rotary_dim: int,
    *,
    base: float = 10000.0,
    scaling: dict | None = None,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The rotary (cos, sin) tables, each (max_positions, rotary_dim // 2).

    ``scaling`` is a Hugging Face ``rope_scaling`` dict (``rope_type`` one of default, linear,
    dynamic, yarn, llama3, longrope, with that type's fields); ``dynamic`` and ``longrope`` build
    the cache for a sequence of ``max_positions`` tokens, as HF would for that length. cos and sin
    include the variant's attention scaling (yarn, longrope), as HF's do.
    """
    if isinstance(max_positions, bool) or not isinstance(max_positions, int) or max_positions < 0:
        raise ValueError(f"max_positions must be a non-negative int; got {max_positions!r}")
    if isinstance(rotary_dim, bool) or not isinstance(rotary_dim, int) or rotary_dim <= 0 or rotary_dim % 2:
        raise ValueError(f"rotary_dim must be a positive even int; got {rotary_dim!r}")
    if not (isinstance(base, (int, float)) and math.isfinite(base) and base > 1):
        raise ValueError(f"base must be a finite number > 1; got {base!r}")
    if scaling is not None and not isinstance(scaling, dict):
        raise ValueError(f"scaling must be a dict of Hugging Face rope_scaling keys or None; got {scaling!r}")
    inv_freq, attention_scaling = inverse_frequencies(rotary_dim, float(base), scaling, max_positions)
    positions = torch.arange(max_positions, dtype=torch.int64).float()
    angles = positions[:, None] * inv_freq.float()[None, :]
    cos = angles.cos() * attention_scaling
    sin = angles.sin() * attention_scaling
    return cos.to(device=device, dtype=dtype), sin.to(device=device, dtype=dtype)
