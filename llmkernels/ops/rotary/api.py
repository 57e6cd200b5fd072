"""Public rotary functions: thin wrappers that validate, pick the requested backend, call the op."""

from __future__ import annotations

import torch

from llmkernels import backends
from llmkernels.ops.common.checks import check_tensor, check_tensor_types


def _check_flags(**flags) -> None:
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool; got {value!r}")


def _check_tables_need_no_grad(cos, sin) -> None:
    if torch.is_grad_enabled() and (getattr(cos, "requires_grad", False) or getattr(sin, "requires_grad", False)):
        raise ValueError(
            "cos/sin require grad, but rotary ops do not compute gradients for the tables; "
            "pass cos.detach(), sin.detach()"
        )


class _RotateInPlace(torch.autograd.Function):
    """In-place rotation that autograd can differentiate through (x is marked dirty)."""

    @staticmethod
    def forward(ctx, x, cos, sin, position_ids, interleaved, backend):
        torch.ops.llmkernels.rotary_embedding_(x, cos, sin, position_ids, interleaved, backend)
        ctx.mark_dirty(x)
        ctx.save_for_backward(cos, sin, position_ids)
        ctx.interleaved, ctx.backend = interleaved, backend
        return x

    @staticmethod
    def backward(ctx, grad):
        cos, sin, position_ids = ctx.saved_tensors
        grad_x = torch.ops.llmkernels.rotary_embedding_backward(
            grad, cos, sin, position_ids, ctx.interleaved, ctx.backend
        )
        return grad_x, None, None, None, None, None


def rotary_embedding(x, cos, sin, position_ids=None, *, interleaved=False, inplace=False):
    """Rotate x (batch, heads, seq, head_dim) by rotary position embedding.

    ``cos``/``sin`` are (max_positions, rotary_dim // 2) tables (see ``rope_cache``), float32 or
    x's dtype; rotary_dim <= head_dim and the columns past it pass through unchanged.
    ``interleaved=False`` is the NeoX/Llama half-split layout, ``True`` the GPT-J pairs.
    ``position_ids`` is (seq,) or (batch, seq) ints, default ``arange(seq)``. The rotation runs
    in float32 and returns x's dtype. ``inplace=True`` rotates x itself and returns it (autograd
    permitting: a leaf that requires grad cannot be changed in place).
    """
    _check_flags(interleaved=interleaved, inplace=inplace)
    # The op runs arguments.check_all; here only what its schema would refuse first.
    check_tensor("x", x)
    check_tensor("cos", cos)
    check_tensor("sin", sin)
    check_tensor_types(position_ids=position_ids)
    _check_tables_need_no_grad(cos, sin)
    backend = backends.requested_backend()
    if not inplace:
        return torch.ops.llmkernels.rotary_embedding(x, cos, sin, position_ids, interleaved, backend)
    if torch.is_grad_enabled() and x.requires_grad:
        return _RotateInPlace.apply(x, cos, sin, position_ids, interleaved, backend)
    torch.ops.llmkernels.rotary_embedding_(x, cos, sin, position_ids, interleaved, backend)
    return x


def apply_rotary(q, k, cos, sin, position_ids=None, *, interleaved=False):
    """Rotate q (batch, heads_q, seq, head_dim) and k (batch, heads_k, seq, head_dim) in one launch.

    Same tables and options as ``rotary_embedding``; q and k may have different head counts (GQA).
    Returns the rotated (q, k).
    """
    _check_flags(interleaved=interleaved)
    check_tensor("q", q)
    check_tensor("k", k)
    check_tensor("cos", cos)
    check_tensor("sin", sin)
    check_tensor_types(position_ids=position_ids)
    _check_tables_need_no_grad(cos, sin)
    backend = backends.requested_backend()
    return torch.ops.llmkernels.apply_rotary(q, k, cos, sin, position_ids, interleaved, backend)
