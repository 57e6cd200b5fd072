"""Rotary position embedding ops: definitions, fake kernels, autograd and routing.

Registered ops (flat arguments; ``backend`` is the requested backend name, resolved at run
time so that the backward, handed the same string, runs where the forward did):

* ``llmkernels::rotary_embedding(x, cos, sin, position_ids, interleaved, backend) -> Tensor``
* ``llmkernels::rotary_embedding_(x!, ...)``: in place
* ``llmkernels::apply_rotary(q, k, cos, sin, position_ids, interleaved, backend) -> (q, k)``
* ``llmkernels::rotary_embedding_backward`` / ``llmkernels::apply_rotary_backward``: the
  rotation by -theta of the incoming gradients.

Autocast: the ops are dtype-preserving and register no autocast kernel: under autocast they
take x in whatever dtype it arrives (the rotation runs in float32 and returns x's dtype).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from llmkernels import backends
from llmkernels.ops.common.layout import finish_output, kernel_input, kernel_output, new_output_like
from llmkernels.ops.common.positions import normalize_positions
from llmkernels.ops.common.registration import KernelFamily, register_backends
from llmkernels.ops.rotary import reference
from llmkernels.ops.rotary.arguments import check_all

OPS = ("rotary_embedding", "apply_rotary")
KERNELS = KernelFamily("rotary", ("rotary",), "llmkernels.ops.rotary.triton_kernels")

for _op in OPS:
    register_backends(_op, KERNELS)


def _rotate_into(op, backend, q, q_out, k, k_out, cos, sin, position_ids, interleaved, conjugate):
    """Write the rotation of q (and k) into q_out (and k_out) on the resolved backend."""
    chosen = backends.resolve(op, q.device, q.dtype, backend)
    positions = normalize_positions(position_ids)
    if q.numel() == 0 and (k is None or k.numel() == 0):
        return
    if chosen == "reference":
        q_out.copy_(reference.rotate(q, cos, sin, positions, interleaved, conjugate))
        if k is not None:
            k_out.copy_(reference.rotate(k, cos, sin, positions, interleaved, conjugate))
        return
    cos32 = cos.to(torch.float32).contiguous()
    sin32 = sin.to(torch.float32).contiguous()
    q_target = kernel_output(q_out)
    k_target = None if k is None else kernel_output(k_out)
    KERNELS.kernel(chosen, "rotary")(
        kernel_input(q), q_target, None if k is None else kernel_input(k), k_target,
        cos32, sin32, positions, interleaved, conjugate,
    )
    finish_output(q_out, q_target)
    if k is not None:
        finish_output(k_out, k_target)


def _no_table_gradients(ctx, first_table_index: int) -> None:
    if ctx.needs_input_grad[first_table_index] or ctx.needs_input_grad[first_table_index + 1]:
        raise RuntimeError(
            "llmkernels rotary ops do not compute gradients for cos/sin; pass tables that do not "
            "require grad (e.g. cos.detach())"
        )


# --- single tensor ------------------------------------------------------------------------
# The backward of a rotation by +theta is the rotation by -theta (``conjugate``), and the
# backward of that is the forward again: both ops are built by one factory.


def _single_op(name: str, conjugate: bool):
    def rotate(
        x: Tensor, cos: Tensor, sin: Tensor, position_ids: Optional[Tensor], interleaved: bool, backend: str
    ) -> Tensor:
        check_all(x, None, cos, sin, position_ids)
        out = new_output_like(x)
        _rotate_into("rotary_embedding", backend, x, out, None, None, cos, sin, position_ids, interleaved, conjugate)
        return out

    return torch.library.custom_op(f"llmkernels::{name}", rotate, mutates_args=())


rotary_embedding_op = _single_op("rotary_embedding", conjugate=False)
rotary_embedding_backward_op = _single_op("rotary_embedding_backward", conjugate=True)


@torch.library.custom_op("llmkernels::rotary_embedding_", mutates_args=("x",))
def rotary_embedding_inplace_op(
    x: Tensor, cos: Tensor, sin: Tensor, position_ids: Optional[Tensor], interleaved: bool, backend: str
) -> None:
    check_all(x, None, cos, sin, position_ids)
    _rotate_into("rotary_embedding", backend, x, x, None, None, cos, sin, position_ids, interleaved, False)


def _fake_single(x, cos, sin, position_ids, interleaved, backend):
    check_all(x, None, cos, sin, position_ids)
    return new_output_like(x)


rotary_embedding_op.register_fake(_fake_single)
rotary_embedding_backward_op.register_fake(_fake_single)


@rotary_embedding_inplace_op.register_fake
def _(x, cos, sin, position_ids, interleaved, backend):
    check_all(x, None, cos, sin, position_ids)


def _setup_single(ctx, inputs, output):
    _, cos, sin, position_ids, interleaved, backend = inputs
    ctx.save_for_backward(cos, sin, position_ids)
    ctx.interleaved, ctx.backend = interleaved, backend


def _single_gradient(op):
    def backward(ctx, grad):
        _no_table_gradients(ctx, 1)
        cos, sin, position_ids = ctx.saved_tensors
        return op(grad, cos, sin, position_ids, ctx.interleaved, ctx.backend), None, None, None, None, None

    return backward


rotary_embedding_op.register_autograd(
    _single_gradient(torch.ops.llmkernels.rotary_embedding_backward), setup_context=_setup_single
)
rotary_embedding_backward_op.register_autograd(
    _single_gradient(torch.ops.llmkernels.rotary_embedding), setup_context=_setup_single
)


# --- q and k in one launch ---------------------------------------------------------------


def _pair_op(name: str, conjugate: bool):
    def rotate(
        q: Tensor, k: Tensor, cos: Tensor, sin: Tensor, position_ids: Optional[Tensor], interleaved: bool,
        backend: str,
    ) -> tuple[Tensor, Tensor]:
        check_all(q, k, cos, sin, position_ids)
        q_out, k_out = new_output_like(q), new_output_like(k)
        _rotate_into("apply_rotary", backend, q, q_out, k, k_out, cos, sin, position_ids, interleaved, conjugate)
        return q_out, k_out

    return torch.library.custom_op(f"llmkernels::{name}", rotate, mutates_args=())


apply_rotary_op = _pair_op("apply_rotary", conjugate=False)
apply_rotary_backward_op = _pair_op("apply_rotary_backward", conjugate=True)


def _fake_pair(q, k, cos, sin, position_ids, interleaved, backend):
    check_all(q, k, cos, sin, position_ids)
    return new_output_like(q), new_output_like(k)


apply_rotary_op.register_fake(_fake_pair)
apply_rotary_backward_op.register_fake(_fake_pair)


def _setup_pair(ctx, inputs, output):
    _, _, cos, sin, position_ids, interleaved, backend = inputs
    ctx.save_for_backward(cos, sin, position_ids)
    ctx.interleaved, ctx.backend = interleaved, backend


def _pair_gradients(op):
    def backward(ctx, grad_q, grad_k):
        _no_table_gradients(ctx, 2)
        cos, sin, position_ids = ctx.saved_tensors
        # Autograd materialises an unused output's gradient as zeros, so both are tensors here.
        gq, gk = op(grad_q, grad_k, cos, sin, position_ids, ctx.interleaved, ctx.backend)
        return gq, gk, None, None, None, None, None

    return backward


apply_rotary_op.register_autograd(
    _pair_gradients(torch.ops.llmkernels.apply_rotary_backward), setup_context=_setup_pair
)
apply_rotary_backward_op.register_autograd(
    _pair_gradients(torch.ops.llmkernels.apply_rotary), setup_context=_setup_pair
)
