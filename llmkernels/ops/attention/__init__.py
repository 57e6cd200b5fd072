"""Attention ops: definitions, fake kernels, autograd and routing.

* ``llmkernels::attention(q, k, v, scale, causal, window_left, window_right, softcap,
  alibi_slopes, key_padding_mask, backend) -> (out, lse)``; lse is float32 (B, Hq, Sq).
* ``llmkernels::attention_backward(dout, q, k, v, out, lse, ...) -> (dq, dk, dv)``.

Semantics: see ``reference.py``. Backends: reference (any head_dim, fp64 too), cpp (CPU), triton
(GPU; CPU interpreter in tests) and cuda; GPU kernels take head_dim 8..256.

Autocast: as torch's ``scaled_dot_product_attention``: the public functions cast q, k and v to the
autocast dtype (``ops/common/autocast.py``; float64 stays); the op itself takes one dtype for all
three. Accumulation is float32 in every backend.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from llmkernels import backends
from llmkernels.ops.attention import decode, reference
from llmkernels.ops.attention.arguments import check_options, check_qkv, kernel_slopes
from llmkernels.ops.common.layout import kernel_input
from llmkernels.ops.common.registration import KernelFamily, register_backends

OP = "attention"
GPU_HEAD_DIMS = (8, 256)
KERNELS = KernelFamily(
    "attention", ("attention_forward", "attention_backward"), "llmkernels.ops.attention.triton_kernels"
)

register_backends(OP, KERNELS)


def _choose(q, backend: str) -> str:
    chosen = backends.resolve(OP, q.device, q.dtype, backend)
    low, high = GPU_HEAD_DIMS
    if chosen in ("triton", "cuda") and not low <= q.shape[-1] <= high:
        if backend == "auto":
            return "reference"
        raise ValueError(f"head_dim {q.shape[-1]} is outside the {chosen} backend's range [{low}, {high}]")
    return chosen


def _empty_result(q):
    """The answer when there are no queries or no keys: out 0 and lse -inf (no key was seen)."""
    out = q.new_zeros(q.shape)
    lse = q.new_full(q.shape[:3], float("-inf"), dtype=torch.float32)
    return out, lse


@torch.library.custom_op("llmkernels::attention", mutates_args=())
def attention_op(
    q: Tensor, k: Tensor, v: Tensor, scale: float, causal: bool, window_left: int, window_right: int,
    softcap: float, alibi_slopes: Optional[Tensor], key_padding_mask: Optional[Tensor], backend: str,
) -> tuple[Tensor, Tensor]:
    check_qkv(q, k, v)
    check_options(q, k, scale, window_left, window_right, softcap, alibi_slopes, key_padding_mask)
    chosen = _choose(q, backend)
    if q.numel() == 0 or k.shape[2] == 0:
        return _empty_result(q)
    if chosen == "reference":
        return reference.forward(q, k, v, scale, causal, window_left, window_right, softcap, alibi_slopes, key_padding_mask)
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty(q.shape[:3], dtype=torch.float32, device=q.device)
    mask = None if key_padding_mask is None else key_padding_mask.contiguous()
    q_in, out_in, lse_in = kernel_input(q), out, lse
    if decode.packs_single_queries(q, k, window_left, window_right, alibi_slopes):
        heads_kv = k.shape[1]
        q_in, out_in = decode.grouped(q_in, heads_kv), decode.grouped(out, heads_kv)
        lse_in = lse.view(q.shape[0], heads_kv, -1)
        causal = False  # the lone query is the last position: it sees every key
    KERNELS.kernel(chosen, "attention_forward")(
        q_in, kernel_input(k), kernel_input(v), out_in, lse_in, scale, causal, window_left, window_right,
        softcap, kernel_slopes(alibi_slopes, q.shape[0], q.shape[1]), mask,
    )
    return out, lse


@attention_op.register_fake
def _(q, k, v, scale, causal, window_left, window_right, softcap, alibi_slopes, key_padding_mask, backend):
    check_qkv(q, k, v)
    check_options(q, k, scale, window_left, window_right, softcap, alibi_slopes, key_padding_mask)
    return q.new_empty(q.shape), q.new_empty(q.shape[:3], dtype=torch.float32)


@torch.library.custom_op("llmkernels::attention_backward", mutates_args=())
def attention_backward_op(
    dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, scale: float, causal: bool,
    window_left: int, window_right: int, softcap: float, alibi_slopes: Optional[Tensor],
    key_padding_mask: Optional[Tensor], backend: str,
) -> tuple[Tensor, Tensor, Tensor]:
    chosen = _choose(q, backend)
    if q.numel() == 0 or k.shape[2] == 0:
        return torch.zeros_like(q, memory_format=torch.contiguous_format), torch.zeros_like(k, memory_format=torch.contiguous_format), torch.zeros_like(v, memory_format=torch.contiguous_format)
    if chosen == "reference":
        dq, dk, dv = reference.backward(dout, q, k, v, out, lse, scale, causal, window_left, window_right, softcap, alibi_slopes, key_padding_mask)
        return dq.contiguous(), dk.contiguous(), dv.contiguous()
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    mask = None if key_padding_mask is None else key_padding_mask.contiguous()
    KERNELS.kernel(chosen, "attention_backward")(
        kernel_input(q), kernel_input(k), kernel_input(v), kernel_input(out), kernel_input(dout), lse.contiguous(),
        dq, dk, dv, scale, causal, window_left, window_right, softcap, kernel_slopes(alibi_slopes, q.shape[0], q.shape[1]), mask,
    )
    return dq, dk, dv


@attention_backward_op.register_fake
def _(dout, q, k, v, out, lse, scale, causal, window_left, window_right, softcap, alibi_slopes, key_padding_mask, backend):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup(ctx, inputs, output):
    q, k, v, scale, causal, window_left, window_right, softcap, alibi_slopes, key_padding_mask, backend = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, alibi_slopes, key_padding_mask)
    ctx.options = (scale, causal, window_left, window_right, softcap)
    ctx.backend = backend


def _backward(ctx, dout, dlse):
    if ctx.needs_input_grad[8]:
        raise RuntimeError("llmkernels.attention does not compute gradients for alibi_slopes")
    q, k, v, out, lse, alibi_slopes, key_padding_mask = ctx.saved_tensors
    dq, dk, dv = torch.ops.llmkernels.attention_backward(
        dout, q, k, v, out, lse, *ctx.options, alibi_slopes, key_padding_mask, ctx.backend
    )
    return (dq, dk, dv) + (None,) * 8


attention_op.register_autograd(_backward, setup_context=_setup)
