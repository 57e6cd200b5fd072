"""The public swiglu function: a thin wrapper that validates, picks the requested backend, calls the op."""

from __future__ import annotations

import torch

from llmkernels import backends
from llmkernels.ops.common.checks import check_tensor, check_tensor_types
from llmkernels.ops.swiglu import arguments


def _check_types(gate, up) -> None:
    """The ops run arguments.check_inputs; here only what their schema would refuse first."""
    check_tensor(arguments.first_name(up), gate)
    check_tensor_types(up=up)


def swiglu(gate, up=None):
    """silu(gate) * up, fused: one pass forward, one backward that recomputes sigmoid(gate).

    Two forms:

    * ``swiglu(gate, up)``: two tensors of one shape (..., H);
    * ``swiglu(gate_up)``: one (..., 2H) tensor holding the [gate | up] halves, as one fused
      ``gate_up`` projection produces; its gradient is then one (..., 2H) buffer.

    Any leading shape; the last dimension must be dense for the kernels (other layouts are copied
    once), and a ``chunk(2, dim=-1)`` view of a packed tensor is a valid ``gate`` or ``up``.
    float16, bfloat16, float32 (float64 on the reference backend); the math runs in float32 and
    the result has the inputs' dtype. Only the inputs are kept for the backward. Dtype-preserving
    under autocast (no cast: the inputs' dtype is the output's).
    """
    _check_types(gate, up)
    return torch.ops.llmkernels.swiglu(gate, up, backends.requested_backend())


def geglu(gate, up=None, approximate="none"):
    """gelu(gate) * up, fused: ``swiglu`` with gelu for silu (the same two forms, layouts, dtypes,
    saved tensors and autocast behaviour). ``approximate`` is F.gelu's: "none" (erf) or "tanh"."""
    _check_types(gate, up)
    arguments.gelu_activation(approximate)
    return torch.ops.llmkernels.geglu(gate, up, approximate, backends.requested_backend())
