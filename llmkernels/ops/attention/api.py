"""Public attention functions: ``attention``, ``attention_varlen`` and an SDPA drop-in."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from llmkernels import backends
from llmkernels.ops.attention.arguments import normalize_window
from llmkernels.ops.common.autocast import autocast_inputs
from llmkernels.ops.common.checks import check_tensor, check_tensor_types


def _options(q, scale, window, softcap):
    # A q without a head_dim gets any scale: the op refuses that q before the scale is used.
    scale = 1.0 / math.sqrt(q.shape[-1] if q.dim() else 1) if scale is None else float(scale)
    window_left, window_right = normalize_window(window)
    softcap = 0.0 if softcap in (None, 0, 0.0) else float(softcap)
    return scale, window_left, window_right, softcap


def attention(q, k, v, *, causal=False, scale=None, window=(-1, -1), softcap=None, alibi_slopes=None,
              key_padding_mask=None, return_lse=False):
    """Fused attention of q (B, Hq, Sq, D) over k, v (B, Hkv, Sk, D), Hq a multiple of Hkv (GQA/MQA).

    ``causal`` and ``window=(left, right)`` align bottom-right when Sq != Sk: query i sees key j
    when j <= i + Sk - Sq (and, with a window, i + Sk - Sq - left <= j <= i + Sk - Sq + right;
    -1 is unbounded). Scores: s = scale * q.k (scale defaults to 1/sqrt(D)); softcap:
    softcap * tanh(s / softcap); ALiBi: -slope * |i + Sk - Sq - j| (``alibi_slopes`` (Hq,) or (B, Hq));
    then the masks; ``key_padding_mask`` (B, Sk) bool, True = attend. A query that sees no key
    returns zeros (lse = -inf). Returns out in q's dtype, and with ``return_lse`` also the
    natural-log log-sum-exp (B, Hq, Sq) float32 (no gradient). Under autocast, q, k and v are cast
    to the autocast dtype first, as torch's ``scaled_dot_product_attention`` does.
    """
    if isinstance(q, torch.Tensor):
        q, k, v = autocast_inputs(q.device.type, q, k, v)
    # The op runs check_qkv and check_options; here only what its schema would refuse first.
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, t)
    check_tensor_types(alibi_slopes=alibi_slopes, key_padding_mask=key_padding_mask)
    scale, window_left, window_right, softcap = _options(q, scale, window, softcap)
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be a bool; got {causal!r}")
    out, lse = torch.ops.llmkernels.attention(
        q, k, v, scale, causal, window_left, window_right, softcap, alibi_slopes, key_padding_mask,
        backends.requested_backend(),
    )
    return (out, lse.detach()) if return_lse else out


def _check_cu_seqlens(name, cu_seqlens, total):
    if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dim() != 1 or cu_seqlens.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"{name} must be a 1-D int32/int64 tensor of sequence boundaries; got {cu_seqlens!r}")
    bounds = cu_seqlens.tolist()  # host values: the per-sequence loop needs them (a GPU sync)
    if not bounds or bounds[0] != 0 or any(b < a for a, b in zip(bounds, bounds[1:])):
        raise ValueError(f"{name} must start at 0 and be non-decreasing; got {bounds}")
    if bounds[-1] != total:
        raise ValueError(f"{name} must end at the packed length {total}; got {bounds[-1]}")
    return bounds


def attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *, causal=False, scale=None,
                     window=(-1, -1), softcap=None, alibi_slopes=None, return_lse=False):
    """Attention over packed sequences: q (total_q, Hq, D), k/v (total_k, Hkv, D), with boundaries
    ``cu_seqlens_q``/``cu_seqlens_k`` (B + 1,) as flash-attn takes them; options as ``attention``.
    Returns out (total_q, Hq, D) and, with ``return_lse``, lse (Hq, total_q)."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            raise ValueError(f"{name} must be packed (total, heads, head_dim); got shape {tuple(getattr(x, 'shape', ()))}")
    bounds_q = _check_cu_seqlens("cu_seqlens_q", cu_seqlens_q, q.shape[0])
    bounds_k = _check_cu_seqlens("cu_seqlens_k", cu_seqlens_k, k.shape[0])
    if len(bounds_q) != len(bounds_k):
        raise ValueError(f"cu_seqlens_q and cu_seqlens_k must describe the same number of sequences; got {len(bounds_q) - 1} and {len(bounds_k) - 1}")
    lengths_q = [b - a for a, b in zip(bounds_q, bounds_q[1:])]
    lengths_k = [b - a for a, b in zip(bounds_k, bounds_k[1:])]
    if max(lengths_q, default=0) > max_seqlen_q or max(lengths_k, default=0) > max_seqlen_k:
        raise ValueError(f"a sequence is longer than max_seqlen_q={max_seqlen_q} / max_seqlen_k={max_seqlen_k}")
    outs, lses = [], []
    for index, (qa, qb, ka, kb) in enumerate(zip(bounds_q, bounds_q[1:], bounds_k, bounds_k[1:])):
        # Each sequence as a strided (1, H, S, D) view of the packed tensors: no copies.
        slopes = alibi_slopes if alibi_slopes is None or alibi_slopes.dim() == 1 else alibi_slopes[index:index + 1]
        out, lse = attention(
            q[qa:qb].permute(1, 0, 2).unsqueeze(0), k[ka:kb].permute(1, 0, 2).unsqueeze(0),
            v[ka:kb].permute(1, 0, 2).unsqueeze(0), causal=causal, scale=scale, window=window, softcap=softcap,
            alibi_slopes=slopes, return_lse=True,
        )
        outs.append(out[0].permute(1, 0, 2))
        lses.append(lse[0])
    out = torch.cat(outs, 0) if outs else q.new_empty(q.shape)
    if not return_lse:
        return out
    return out, (torch.cat(lses, 1) if lses else q.new_empty(q.shape[1], 0, dtype=torch.float32))


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """``F.scaled_dot_product_attention`` with torch's exact semantics (top-left causal alignment),
    routed to the fused kernels when the arguments allow, to PyTorch otherwise (masks, dropout,
    a value head_dim unlike the query's, other ranks). Under autocast it casts as torch does."""
    if isinstance(query, torch.Tensor):
        query, key, value = autocast_inputs(query.device.type, query, key, value)
    # Anything the fused kernels do not take (including a non-tensor or a query of the wrong rank)
    # goes to torch, whose own checks then name the argument as a user of torch expects.
    fused = (
        all(isinstance(t, torch.Tensor) for t in (query, key, value))
        and attn_mask is None and dropout_p == 0.0 and query.dim() == 4 and key.dim() == 4 and value.dim() == 4
        and key.shape == value.shape and query.shape[-1] == value.shape[-1] and query.shape[0] == key.shape[0]
        and query.dtype == key.dtype == value.dtype and query.is_floating_point()
        and (key.shape[1] == query.shape[1] or (enable_gqa and key.shape[1] and query.shape[1] % key.shape[1] == 0))
    )
    seq_q, seq_k = (query.shape[-2], key.shape[-2]) if fused else (0, 0)
    if fused and is_causal and seq_q < seq_k:
        fused = False  # top-left causal with Sq < Sk has no bottom-right equivalent here
    if not fused:
        kwargs = {"enable_gqa": enable_gqa} if enable_gqa else {}
        return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p,
                                              is_causal=is_causal, scale=scale, **kwargs)
    if not is_causal:
        return attention(query, key, value, scale=scale)
    if seq_q == seq_k:
        return attention(query, key, value, causal=True, scale=scale)
    # Top-left: j <= i, i.e. j <= i + (Sk - Sq) + (Sq - Sk): a right window of Sq - Sk > 0.
    return attention(query, key, value, scale=scale, window=(-1, seq_q - seq_k))
