"""Gated linear unit ops (SwiGLU, GeGLU): definitions, fake kernels, autograd and routing.

Registered ops (flat arguments; ``backend`` is the requested backend name, resolved at run
time so that the backward, handed the same string, runs where the forward did):

* ``llmkernels::swiglu(gate, up, backend) -> Tensor``: silu(gate) * up. ``up=None`` is the
  packed form: ``gate`` is then (..., 2H) holding [gate | up] and the output is (..., H).
* ``llmkernels::swiglu_backward(grad, gate, up, backend) -> Tensor``: ONE (..., 2H) buffer
  holding [d_gate | d_up]. In the packed form it is gate_up's gradient as it stands (autograd
  concatenates nothing); in the two-tensor form the two gradients are its halves (views).

* ``llmkernels::geglu(gate, up, approximate, backend)`` / ``llmkernels::geglu_backward``: the same
  with gelu (``approximate`` "none": erf; "tanh": the tanh approximation) for silu, on the same
  kernels (the activation is their template/constexpr parameter).

Only the inputs are saved for the backward, which recomputes sigmoid(gate): silu(gate) is never
stored (eager ``F.silu(g) * u`` keeps it, a third tensor of the output's size).

Autocast: the ops are dtype-preserving and register no autocast kernel: under autocast they take
gate and up in whatever dtype they arrive (the math runs in float32 and the output has the inputs'
dtype), so a bf16 projection feeds them bf16 and gets bf16 back.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from llmkernels import backends
from llmkernels.ops.common.layout import kernel_input
from llmkernels.ops.common.registration import KernelFamily, register_backends
from llmkernels.ops.swiglu import reference
from llmkernels.ops.swiglu.arguments import check_grad, check_inputs, gelu_activation, output_shape

OPS = ("swiglu", "geglu")
# The kernels' activation argument (csrc/swiglu/swiglu.h, the Triton ACTIVATION constexpr).
ACTIVATION_CODES = {name: code for code, name in enumerate(reference.ACTIVATIONS)}
KERNELS = KernelFamily("swiglu", ("swiglu_forward", "swiglu_backward"), "llmkernels.ops.swiglu.triton_kernels")

for _op in OPS:
    register_backends(_op, KERNELS)


def _rows(x: Tensor, cols: int) -> Tensor:
    """x as (rows, cols) with a dense last dim: a view where the leading strides allow one."""
    return kernel_input(x).reshape(-1, cols)


def _gate_and_up_rows(gate: Tensor, up: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """(rows, H) views of gate and up; in the packed form the two halves of each gate_up row."""
    if up is None:
        hidden = gate.shape[-1] // 2
        packed = _rows(gate, 2 * hidden)
        return packed[:, :hidden], packed[:, hidden:]
    hidden = gate.shape[-1]
    return _rows(gate, hidden), _rows(up, hidden)


def _new_output(gate: Tensor, up: Optional[Tensor]) -> Tensor:
    return torch.empty(output_shape(gate, up), dtype=gate.dtype, device=gate.device)


def _new_input_gradient(gate: Tensor, up: Optional[Tensor]) -> Tensor:
    hidden = output_shape(gate, up)[-1]
    return torch.empty((*gate.shape[:-1], 2 * hidden), dtype=gate.dtype, device=gate.device)


def _forward(op: str, gate: Tensor, up: Optional[Tensor], activation: str, backend: str) -> Tensor:
    chosen = backends.resolve(op, gate.device, gate.dtype, backend)
    out = _new_output(gate, up)
    if out.numel() == 0:
        return out
    g, u = _gate_and_up_rows(gate, up)
    y = out.view(-1, out.shape[-1])
    if chosen == "reference":
        y.copy_(reference.gated(g, u, activation))
    else:
        KERNELS.kernel(chosen, "swiglu_forward")(g, u, y, ACTIVATION_CODES[activation])
    return out


def _backward(op: str, grad: Tensor, gate: Tensor, up: Optional[Tensor], activation: str, backend: str) -> Tensor:
    chosen = backends.resolve(op, gate.device, gate.dtype, backend)
    grad_in = _new_input_gradient(gate, up)
    if grad_in.numel() == 0:
        return grad_in
    hidden = grad.shape[-1]
    g, u = _gate_and_up_rows(gate, up)
    dy = _rows(grad, hidden)
    packed = grad_in.view(-1, 2 * hidden)
    d_gate, d_up = packed[:, :hidden], packed[:, hidden:]
    if chosen == "reference":
        ref_gate, ref_up = reference.gated_backward(dy, g, u, activation)
        d_gate.copy_(ref_gate)
        d_up.copy_(ref_up)
    else:
        KERNELS.kernel(chosen, "swiglu_backward")(dy, g, u, d_gate, d_up, ACTIVATION_CODES[activation])
    return grad_in


def _input_gradients(grad_in: Tensor, gate: Tensor, up: Optional[Tensor]) -> tuple:
    """The packed form's gradient as it stands; the two-tensor form's as the buffer's halves."""
    if up is None:
        return grad_in, None
    hidden = gate.shape[-1]
    return grad_in[..., :hidden], grad_in[..., hidden:]


# --- swiglu -------------------------------------------------------------------------------


@torch.library.custom_op("llmkernels::swiglu", mutates_args=())
def swiglu_op(gate: Tensor, up: Optional[Tensor], backend: str) -> Tensor:
    check_inputs(gate, up)
    return _forward("swiglu", gate, up, "silu", backend)


@torch.library.custom_op("llmkernels::swiglu_backward", mutates_args=())
def swiglu_backward_op(grad: Tensor, gate: Tensor, up: Optional[Tensor], backend: str) -> Tensor:
    check_grad(grad, gate, up)
    return _backward("swiglu", grad, gate, up, "silu", backend)


@swiglu_op.register_fake
def _(gate, up, backend):
    check_inputs(gate, up)
    return _new_output(gate, up)


@swiglu_backward_op.register_fake
def _(grad, gate, up, backend):
    check_grad(grad, gate, up)
    return _new_input_gradient(gate, up)


def _setup_swiglu(ctx, inputs, output):
    gate, up, backend = inputs
    ctx.save_for_backward(gate, up)
    ctx.backend = backend


def _swiglu_gradients(ctx, grad):
    gate, up = ctx.saved_tensors
    grad_in = torch.ops.llmkernels.swiglu_backward(grad, gate, up, ctx.backend)
    return (*_input_gradients(grad_in, gate, up), None)


swiglu_op.register_autograd(_swiglu_gradients, setup_context=_setup_swiglu)


# --- geglu: the same kernels with gelu (exact or tanh) as the activation ----------------------


@torch.library.custom_op("llmkernels::geglu", mutates_args=())
def geglu_op(gate: Tensor, up: Optional[Tensor], approximate: str, backend: str) -> Tensor:
    check_inputs(gate, up)
    return _forward("geglu", gate, up, gelu_activation(approximate), backend)


@torch.library.custom_op("llmkernels::geglu_backward", mutates_args=())
def geglu_backward_op(grad: Tensor, gate: Tensor, up: Optional[Tensor], approximate: str, backend: str) -> Tensor:
    check_grad(grad, gate, up)
    return _backward("geglu", grad, gate, up, gelu_activation(approximate), backend)


@geglu_op.register_fake
def _(gate, up, approximate, backend):
    check_inputs(gate, up)
    gelu_activation(approximate)
    return _new_output(gate, up)


@geglu_backward_op.register_fake
def _(grad, gate, up, approximate, backend):
    check_grad(grad, gate, up)
    gelu_activation(approximate)
    return _new_input_gradient(gate, up)


def _setup_geglu(ctx, inputs, output):
    gate, up, approximate, backend = inputs
    ctx.save_for_backward(gate, up)
    ctx.approximate, ctx.backend = approximate, backend


def _geglu_gradients(ctx, grad):
    gate, up = ctx.saved_tensors
    grad_in = torch.ops.llmkernels.geglu_backward(grad, gate, up, ctx.approximate, ctx.backend)
    return (*_input_gradients(grad_in, gate, up), None, None)


geglu_op.register_autograd(_geglu_gradients, setup_context=_setup_geglu)
