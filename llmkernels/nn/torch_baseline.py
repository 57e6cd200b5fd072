"""PyTorch's own functions behind the ``ops="torch"`` switch of the nn modules.

The baseline a user would write without llmkernels: Hugging Face's ``rotate_half`` RoPE,
``F.scaled_dot_product_attention``, ``F.cross_entropy`` on full logits, ``F.rms_norm`` after an
unfused residual add and ``F.silu(gate) * up``. It exists so that a model
can be run, trained and timed both ways with the same parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

OPS = ("llmkernels", "torch")


def check_ops(ops: str) -> str:
    if ops not in OPS:
        raise ValueError(f"ops must be one of {OPS}; got {ops!r}")
    return ops


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rotate_pairs(x):
    """The GPT-J layout's partner of each column: (a, b) pairs become (-b, a)."""
    return torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)


def _angles(table, positions, seq: int, interleaved: bool, dtype):
    """Rows of a (max_positions, R/2) table, widened to R columns, broadcastable to (batch, heads, seq, R)."""
    table = table.repeat_interleave(2, dim=-1) if interleaved else torch.cat((table, table), dim=-1)
    rows = table[:seq] if positions is None else table[positions]
    if rows.dim() == 3:  # per-batch positions (batch, seq): leave room for the heads
        rows = rows.unsqueeze(1)
    return rows.to(dtype)


def rotary(q, k, cos, sin, positions, interleaved: bool):
    """Rotate q and k as ``llmkernels.apply_rotary`` does, in the dtype of q (as Hugging Face does)."""
    seq = q.shape[-2]
    c = _angles(cos, positions, seq, interleaved, q.dtype)
    s = _angles(sin, positions, seq, interleaved, q.dtype)
    rotate = _rotate_pairs if interleaved else _rotate_half
    width = c.shape[-1]

    def one(x):
        if width == x.shape[-1]:
            return x * c + rotate(x) * s
        # Partial rotary: the columns past rotary_dim pass through.
        head, tail = x[..., :width], x[..., width:]
        return torch.cat((head * c + rotate(head) * s, tail), dim=-1)

    return one(q), one(k)


def attention(q, k, v, causal: bool, key_padding_mask=None):
    """SDPA with GQA and causal masks aligned bottom-right (the last query sees every key), as a KV
    cache needs; ``key_padding_mask`` (batch, keys) bool, True = attend. A query that sees no key
    gets zeros, as llmkernels.attention gives (SDPA alone would give NaN)."""
    seq_q, seq_k = q.shape[-2], k.shape[-2]
    if k.shape[1] != q.shape[1]:
        repeat = q.shape[1] // k.shape[1]
        k = k.repeat_interleave(repeat, dim=1)
        v = v.repeat_interleave(repeat, dim=1)
    if key_padding_mask is None:
        if not causal or seq_q == 1:
            return F.scaled_dot_product_attention(q, k, v)
        if seq_q == seq_k:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    mask = torch.ones(seq_q, seq_k, dtype=torch.bool, device=q.device)
    if causal:
        rows = torch.arange(seq_q, device=q.device)[:, None] + (seq_k - seq_q)
        mask = torch.arange(seq_k, device=q.device)[None, :] <= rows
    if key_padding_mask is not None:
        mask = mask & key_padding_mask[:, None, None, :].to(torch.bool)
    sees_a_key = mask.any(dim=-1, keepdim=True)
    # Rows that see nothing attend to every key instead (finite, then zeroed), so no NaN reaches
    # the output or the backward.
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | ~sees_a_key)
    return out * sees_a_key


def cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing, softcap):
    """``F.cross_entropy`` on float32 logits, after the softcap when one is set."""
    logits = logits.float()
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    return F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction=reduction,
                           label_smoothing=label_smoothing)


def rms_norm(x, weight, eps, residual):
    """``F.rms_norm`` over the last dimension; with ``residual``, of ``h = x + residual``, returning (y, h)."""
    if residual is None:
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    h = x + residual
    return F.rms_norm(h, (h.shape[-1],), weight, eps), h


def swiglu(gate, up):
    """The gated MLP's activation as Llama's reference code writes it."""
    return F.silu(gate) * up


def unsupported(ops: str, **options) -> None:
    """Refuse, at construction, an option that PyTorch's own functions lack rather than ignore it."""
    if ops != "torch":
        return
    given = [name for name, on in options.items() if on]
    if given:
        raise ValueError(f"ops='torch' runs PyTorch's own functions, which have no {', '.join(given)}; use ops='llmkernels'")
