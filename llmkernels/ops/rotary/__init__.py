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

from llmkernels import _native, _triton, backends
from llmkernels.ops.common.checks import FLOAT_DTYPES, KERNEL_DTYPES
from llmkernels.ops.rotary import reference
from llmkernels.ops.rotary.arguments import (
    check_all,
    kernel_input,
    new_output_like,
    normalize_positions,
)

OPS = ("rotary_embedding", "apply_rotary")

for _op in OPS:
    backends.register(_op, backends.Implementation("reference", ("cpu", "cuda"), FLOAT_DTYPES, lambda d: (True, "plain PyTorch")))
    backends.register(_op, backends.Implementation("cpp", ("cpu",), KERNEL_DTYPES, _native.cpu_probe))
    backends.register(_op, backends.Implementation("triton", ("cpu", "cuda"), KERNEL_DTYPES, _triton.probe, _triton.refuses))
    backends.register(_op, backends.Implementation("cuda", ("cuda",), KERNEL_DTYPES, _native.cuda_probe))


def _kernel(backend: str):
    if backend == "cpp":
        return _native.extension().rotary_cpu
    if backend == "cuda":
        return _native.extension().rotary_cuda
    from llmkernels.ops.rotary import triton_kernels

    return triton_kernels.rotate


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
    # Kernels need a unit last stride on outputs too; rotate into a temporary where it lacks one.
    pairs = [(q, q_out)] + ([(k, k_out)] if k is not None else [])
    targets = [out if out.stride(-1) == 1 else torch.empty(out.shape, dtype=out.dtype, device=out.device) for _, out in pairs]
    inputs = [kernel_input(x) for x, _ in pairs]
    _kernel(chosen)(
        inputs[0], targets[0],
        inputs[1] if k is not None else None, targets[1] if k is not None else None,
        cos32, sin32, positions, interleaved, conjugate,
    )
    for (_, out), target in zip(pairs, targets):
        if target is not out:
            out.copy_(target)


# --- single tensor ------------------------------------------------------------------------


@torch.library.custom_op("llmkernels::rotary_embedding", mutates_args=())
def rotary_embedding_op(
    x: Tensor, cos: Tensor, sin: Tensor, position_ids: Optional[Tensor], interleaved: bool, backend: str
) -> Tensor:
    check_all(x, None, cos, sin, position_ids)
    out = new_output_like(x)
    _rotate_into("rotary_embedding", backend, x, out, None, None, cos, sin, position_ids, interleaved, False)
    return out


@torch.library.custom_op("llmkernels::rotary_embedding_backward", mutates_args=())
def rotary_embedding_backward_op(
    grad: Tensor, cos: Tensor, sin: Tensor, position_ids: Optional[Tensor], interleaved: bool, backend: str
) -> Tensor:
    check_all(grad, None, cos, sin, position_ids)
    out = new_output_like(grad)
    _rotate_into("rotary_embedding", backend, grad, out, None, None, cos, sin, position_ids, interleaved, True)
    return out


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


def _no_table_gradients(ctx, first_table_index: int) -> None:
    if ctx.needs_input_grad[first_table_index] or ctx.needs_input_grad[first_table_index + 1]:
        raise RuntimeError(
            "llmkernels rotary ops do not compute gradients for cos/sin; pass tables that do not "
            "require grad (e.g. cos.detach())"
        )


def _setup_single(ctx, inputs, output):
    _, cos, sin, position_ids, interleaved, backend = inputs
    ctx.save_for_backward(cos, sin, position_ids)
    ctx.interleaved, ctx.backend = interleaved, backend


def _backward_single(ctx, grad):
    _no_table_gradients(ctx, 1)
    cos, sin, position_ids = ctx.saved_tensors
    grad_x = torch.ops.llmkernels.rotary_embedding_backward(
        grad, cos, sin, position_ids, ctx.interleaved, ctx.backend
    )
    return grad_x, None, None, None, None, None


rotary_embedding_op.register_autograd(_backward_single, setup_context=_setup_single)


def _backward_of_backward(ctx, grad):
    # The backward is itself a rotation (by -theta); its own gradient rotates by +theta.
    _no_table_gradients(ctx, 1)
    cos, sin, position_ids = ctx.saved_tensors
    grad_x = torch.ops.llmkernels.rotary_embedding(grad, cos, sin, position_ids, ctx.interleaved, ctx.backend)
    return grad_x, None, None, None, None, None


rotary_embedding_backward_op.register_autograd(_backward_of_backward, setup_context=_setup_single)


# --- q and k in one launch ---------------------------------------------------------------


@torch.library.custom_op("llmkernels::apply_rotary", mutates_args=())
def apply_rotary_op(
    q: Tensor, k: Tensor, cos: Tensor, sin: Tensor, position_ids: Optional[Tensor], interleaved: bool, backend: str
) -> tuple[Tensor, Tensor]:
    check_all(q, k, cos, sin, position_ids)
    q_out, k_out = new_output_like(q), new_output_like(k)
    _rotate_into("apply_rotary", backend, q, q_out, k, k_out, cos, sin, position_ids, interleaved, False)
    return q_out, k_out


@torch.library.custom_op("llmkernels::apply_rotary_backward", mutates_args=())
def apply_rotary_backward_op(
    grad_q: Tensor, grad_k: Tensor, cos: Tensor, sin: Tensor, position_ids: Optional[Tensor], interleaved: bool,
    backend: str,
) -> tuple[Tensor, Tensor]:
    check_all(grad_q, grad_k, cos, sin, position_ids)
    q_out, k_out = new_output_like(grad_q), new_output_like(grad_k)
    _rotate_into("apply_rotary", backend, grad_q, q_out, grad_k, k_out, cos, sin, position_ids, interleaved, True)
    return q_out, k_out


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
