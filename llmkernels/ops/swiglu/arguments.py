"""Validation of swiglu arguments, shared by the wrapper, the ops and their fake kernels.

Two forms: ``(gate, up)`` of one shape, or ``up=None`` with a packed ``gate_up`` whose last
dimension 2H holds the [gate | up] halves (the output of one fused gate_up projection).
"""

from __future__ import annotations

import torch

from llmkernels.ops.common.checks import FLOAT_DTYPES, check_same_device, check_tensor


def first_name(up) -> str:
    """What the first argument is called in messages: ``gate_up`` in the packed form."""
    return "gate_up" if up is None else "gate"


def output_shape(gate: torch.Tensor, up) -> tuple[int, ...]:
    """The shape of silu(gate) * up: gate's, or the packed input's with the last dim halved."""
    if up is None:
        return (*gate.shape[:-1], gate.shape[-1] // 2)
    return tuple(gate.shape)


def check_inputs(gate, up) -> None:
    name = first_name(up)
    check_tensor(name, gate, dtypes=FLOAT_DTYPES)
    if gate.dim() == 0:
        raise ValueError(f"{name} must have at least one dimension; got a 0-d tensor")
    if up is None:
        if gate.shape[-1] % 2:
            raise ValueError(
                f"gate_up's last dimension holds the [gate | up] halves and must be even; "
                f"got shape {tuple(gate.shape)}"
            )
        return
    check_tensor("up", up, dtypes=FLOAT_DTYPES)
    check_same_device("up", up, "gate", gate)
    if up.dtype != gate.dtype:
        raise ValueError(f"up must have gate's dtype {gate.dtype}; got {up.dtype}")
    if up.shape != gate.shape:
        raise ValueError(f"up must have gate's shape {tuple(gate.shape)}; got {tuple(up.shape)}")


def check_grad(grad, gate, up) -> None:
    check_inputs(gate, up)
    check_tensor("grad", grad, dtypes=(gate.dtype,))
    check_same_device("grad", grad, first_name(up), gate)
    expected = output_shape(gate, up)
    if tuple(grad.shape) != expected:
        raise ValueError(f"grad must have the output's shape {expected}; got {tuple(grad.shape)}")


GELU_APPROXIMATIONS = {"none": "gelu", "tanh": "gelu_tanh"}


def gelu_activation(approximate) -> str:
    """The activation name of ``F.gelu(..., approximate=approximate)``."""
    if approximate not in GELU_APPROXIMATIONS:
        raise ValueError(f"approximate must be 'none' or 'tanh' (as in F.gelu); got {approximate!r}")
    return GELU_APPROXIMATIONS[approximate]
