"""Attention in plain PyTorch: the specification every backend is tested against.

q (B, Hq, Sq, D); k, v (B, Hkv, Sk, D), Hq a multiple of Hkv (query head h reads kv head
h // (Hq // Hkv)). With offset = Sk - Sq (bottom-right alignment), scores are formed in this order:
s = scale * q.k; softcap: s = softcap * tanh(s / softcap); ALiBi: s -= slope * |i + offset - j|;
then the masks: causal (j <= i + offset), window (i + offset - left <= j <= i + offset + right,
-1 unbounded), key padding (True = attend). A row that sees no key gives zeros and lse = -inf.
"""

from __future__ import annotations

import torch


def allowed_keys(seq_q, seq_k, causal, window_left, window_right, key_padding_mask, device):
    """Bool mask broadcastable to (B, Hq, Sq, Sk): which keys each query may see."""
    offset = seq_k - seq_q
    i = torch.arange(seq_q, device=device).unsqueeze(-1)
    j = torch.arange(seq_k, device=device).unsqueeze(0)
    allowed = torch.ones(seq_q, seq_k, dtype=torch.bool, device=device)
    if causal:
        allowed &= j <= i + offset
    if window_left >= 0:
        allowed &= j >= i + offset - window_left
    if window_right >= 0:
        allowed &= j <= i + offset + window_right
    allowed = allowed[None, None]
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask[:, None, None, :].bool()
    return allowed


def _expand_kv(x, heads_q):
    return x.repeat_interleave(heads_q // x.shape[1], dim=1)


def scores(q, k, scale, softcap, alibi_slopes):
    """(capped scores after ALiBi, capped scores before ALiBi) in the compute dtype."""
    compute = torch.promote_types(q.dtype, torch.float32)
    s = scale * torch.matmul(q.to(compute), _expand_kv(k, q.shape[1]).to(compute).transpose(-1, -2))
    if softcap:
        s = softcap * torch.tanh(s / softcap)
    capped = s
    if alibi_slopes is not None:
        seq_q, seq_k = q.shape[2], k.shape[2]
        i = torch.arange(seq_q, device=q.device).unsqueeze(-1)
        j = torch.arange(seq_k, device=q.device).unsqueeze(0)
        distance = (i + seq_k - seq_q - j).abs().to(compute)
        slopes = alibi_slopes.to(compute)
        slopes = slopes.expand(q.shape[0], q.shape[1]) if slopes.dim() == 1 else slopes
        s = s - slopes[:, :, None, None] * distance
    return s, capped


def probabilities(q, k, scale, causal, window_left, window_right, softcap, alibi_slopes, key_padding_mask):
    """(P, lse, capped scores): P is zero on masked keys and on rows that see no key."""
    s, capped = scores(q, k, scale, softcap, alibi_slopes)
    allowed = allowed_keys(q.shape[2], k.shape[2], causal, window_left, window_right, key_padding_mask, q.device)
    s = s.masked_fill(~allowed, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    finite = torch.isfinite(lse).unsqueeze(-1)
    p = torch.where(finite, torch.exp(s - torch.where(finite, lse.unsqueeze(-1), torch.zeros_like(s[..., :1]))), torch.zeros_like(s))
    return p, lse, capped


def forward(q, k, v, scale, causal, window_left, window_right, softcap, alibi_slopes, key_padding_mask):
    """(out in q's dtype, lse float32 (B, Hq, Sq))."""
    p, lse, _ = probabilities(q, k, scale, causal, window_left, window_right, softcap, alibi_slopes, key_padding_mask)
    out = torch.matmul(p, _expand_kv(v, q.shape[1]).to(p.dtype))
    return out.to(q.dtype), lse.to(torch.float32)


def _sum_groups(x, heads_kv):
    batch, heads_q, seq, dim = x.shape
    return x.reshape(batch, heads_kv, heads_q // heads_kv, seq, dim).sum(2)


def backward(dout, q, k, v, out, lse, scale, causal, window_left, window_right, softcap, alibi_slopes, key_padding_mask):
    """(dq, dk, dv) in closed form (an op's implementation runs below autograd):
    dP = dout.v^T, dS = P * (dP - rowsum(dout * out)), through the softcap dS *= 1 - (s/cap)^2."""
    p, _, capped = probabilities(q, k, scale, causal, window_left, window_right, softcap, alibi_slopes, key_padding_mask)
    compute = p.dtype
    heads_q, heads_kv = q.shape[1], k.shape[1]
    d_out = dout.to(compute)
    delta = (d_out * out.to(compute)).sum(-1, keepdim=True)
    dp = torch.matmul(d_out, _expand_kv(v, heads_q).to(compute).transpose(-1, -2))
    ds = p * (dp - delta)
    if softcap:
        ds = ds * (1 - (capped / softcap).square())
    dq = scale * torch.matmul(ds, _expand_kv(k, heads_q).to(compute))
    dk = _sum_groups(scale * torch.matmul(ds.transpose(-1, -2), q.to(compute)), heads_kv)
    dv = _sum_groups(torch.matmul(p.transpose(-1, -2), d_out), heads_kv)
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)
