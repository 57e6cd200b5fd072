"""Validation and normalisation of attention arguments, shared by wrappers, ops and fake kernels."""

from __future__ import annotations

import torch

from llmkernels.ops.common.checks import FLOAT_DTYPES, check_same_device, check_tensor, is_finite_number


def check_qkv(q, k, v) -> None:
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, x, ndims=(4,), dtypes=FLOAT_DTYPES)
    for name, x in (("k", k), ("v", v)):
        check_same_device(name, x, "q", q)
        if x.dtype != q.dtype:
            raise ValueError(f"{name} must have q's dtype {q.dtype}; got {x.dtype}")
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape (batch, heads_kv, seq_k, head_dim); got {tuple(k.shape)} and {tuple(v.shape)}")
    if k.shape[0] != q.shape[0]:
        raise ValueError(f"k has batch {k.shape[0]} but q has batch {q.shape[0]}")
    if k.shape[3] != q.shape[3]:
        raise ValueError(f"k has head_dim {k.shape[3]} but q has head_dim {q.shape[3]}")
    if k.shape[1] == 0 or q.shape[1] % k.shape[1]:
        raise ValueError(f"heads_q ({q.shape[1]}) must be a multiple of heads_kv ({k.shape[1]})")


def check_options(q, k, scale, window_left, window_right, softcap, alibi_slopes, key_padding_mask) -> None:
    if not is_finite_number(scale):
        raise ValueError(f"scale must be finite; got {scale!r}")
    for name, value in (("window[0]", window_left), ("window[1]", window_right)):
        if value < -1:
            raise ValueError(f"{name} must be >= 0, or -1 for unbounded; got {value}")
    if not (is_finite_number(softcap) and softcap >= 0):
        raise ValueError(f"softcap must be None, 0 (off) or a finite positive number; got {softcap!r}")
    batch, heads_q = q.shape[0], q.shape[1]
    if alibi_slopes is not None:
        check_tensor("alibi_slopes", alibi_slopes, ndims=(1, 2), dtypes=FLOAT_DTYPES)
        check_same_device("alibi_slopes", alibi_slopes, "q", q)
        expected = (heads_q,) if alibi_slopes.dim() == 1 else (batch, heads_q)
        if tuple(alibi_slopes.shape) != expected:
            raise ValueError(f"alibi_slopes must be (heads_q,) or (batch, heads_q) = {expected}; got {tuple(alibi_slopes.shape)}")
    if key_padding_mask is not None:
        check_tensor("key_padding_mask", key_padding_mask, ndims=(2,), dtypes=(torch.bool,))
        check_same_device("key_padding_mask", key_padding_mask, "q", q)
        if tuple(key_padding_mask.shape) != (batch, k.shape[2]):
            raise ValueError(f"key_padding_mask must be (batch, seq_k) = {(batch, k.shape[2])}; got {tuple(key_padding_mask.shape)}")


def normalize_window(window) -> tuple[int, int]:
    if not (isinstance(window, (tuple, list)) and len(window) == 2 and all(isinstance(w, int) and not isinstance(w, bool) for w in window)):
        raise ValueError(f"window must be a pair of ints (left, right), -1 for unbounded; got {window!r}")
    return int(window[0]), int(window[1])


def kernel_slopes(alibi_slopes, batch: int, heads_q: int):
    if alibi_slopes is None:
        return None
    slopes = alibi_slopes.to(torch.float32)
    if slopes.dim() == 1:
        slopes = slopes.expand(batch, heads_q)
    return slopes.contiguous()
