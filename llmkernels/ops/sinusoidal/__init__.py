"""Sinusoidal position encoding ops: definitions, fake kernels, autograd and routing.

* ``llmkernels::add_sinusoidal_position_encoding(x, position_ids, base, scale, backend)``
  returns x * scale + PE[positions], in x's dtype, computed in float32.
* ``llmkernels::add_sinusoidal_position_encoding_backward(grad, scale, backend)``: grad * scale.

Autocast: dtype-preserving, no autocast kernel; x is taken in the dtype it arrives in.
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
from torch import Tensor

from llmkernels import _native, _triton, backends
from llmkernels.ops.common.checks import (
    FLOAT_DTYPES,
    INDEX_DTYPES,
    KERNEL_DTYPES,
    can_check_values,
    check_dim_size,
    check_same_device,
    check_tensor,
)
from llmkernels.ops.rotary.arguments import kernel_input, new_output_like, normalize_positions
from llmkernels.ops.sinusoidal import reference

OP = "add_sinusoidal_position_encoding"

backends.register(OP, backends.Implementation("reference", ("cpu", "cuda"), FLOAT_DTYPES, lambda d: (True, "plain PyTorch")))
backends.register(OP, backends.Implementation("cpp", ("cpu",), KERNEL_DTYPES, _native.cpu_probe))
backends.register(OP, backends.Implementation("triton", ("cpu", "cuda"), KERNEL_DTYPES, _triton.probe, _triton.refuses))
backends.register(OP, backends.Implementation("cuda", ("cuda",), KERNEL_DTYPES, _native.cuda_probe))


def check_arguments(x, position_ids, base: float, scale: float) -> None:
    check_tensor("x", x, ndims=(3,), dtypes=FLOAT_DTYPES)
    if not base > 1:
        raise ValueError(f"base must be > 1; got {base!r}")
    if position_ids is None:
        return
    check_tensor("position_ids", position_ids, ndims=(1, 2), dtypes=INDEX_DTYPES)
    check_same_device("position_ids", position_ids, "x", x)
    check_dim_size("position_ids", position_ids, -1, x.shape[1], "x's seq")
    if position_ids.dim() == 2 and position_ids.shape[0] not in (1, x.shape[0]):
        raise ValueError(
            f"position_ids must be (seq,), (1, seq) or (batch, seq) with batch {x.shape[0]}; "
            f"got shape {tuple(position_ids.shape)}"
        )
    if can_check_values(position_ids) and position_ids.numel() and int(position_ids.min()) < 0:
        raise ValueError(f"position_ids must be >= 0; got a minimum of {int(position_ids.min())}")


@functools.lru_cache(maxsize=8)
def _cpu_table(num_positions: int, d_model: int, base: float) -> Tensor:
    # The CPU kernels read PE rows from a table built by the reference formula (the ISA kernels
    # have no vectorised sin/cos); cached because training calls repeat the same shape.
    return reference.encoding(torch.arange(num_positions), d_model, base).contiguous()


def _add_into(backend: str, x: Tensor, out: Tensor, position_ids, base: float, scale: float) -> None:
    chosen = backends.resolve(OP, x.device, x.dtype, backend)
    positions = normalize_positions(position_ids)
    if x.numel() == 0:
        return
    if chosen == "reference":
        out.copy_(reference.add_encoding(x, positions, base, scale))
        return
    source = kernel_input(x)
    target = out if out.stride(-1) == 1 else torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if chosen == "cpp":
        rows = x.shape[1] if positions is None else int(positions.max()) + 1
        table = _cpu_table(rows, x.shape[2], float(base))
        _native.extension().add_sinusoidal_cpu(source, target, table, positions, float(scale))
    else:
        inv_freq = reference.inverse_frequencies(x.shape[2], float(base), x.device).contiguous()
        if chosen == "cuda":
            _native.extension().add_sinusoidal_cuda(source, target, inv_freq, positions, float(scale))
        else:
            from llmkernels.ops.sinusoidal import triton_kernels

            triton_kernels.add_encoding(source, target, inv_freq, positions, float(scale))
    if target is not out:
        out.copy_(target)


@torch.library.custom_op("llmkernels::add_sinusoidal_position_encoding", mutates_args=())
def add_sinusoidal_op(x: Tensor, position_ids: Optional[Tensor], base: float, scale: float, backend: str) -> Tensor:
    check_arguments(x, position_ids, base, scale)
    out = new_output_like(x)
    _add_into(backend, x, out, position_ids, base, scale)
    return out


@add_sinusoidal_op.register_fake
def _(x, position_ids, base, scale, backend):
    check_arguments(x, position_ids, base, scale)
    return new_output_like(x)


@torch.library.custom_op("llmkernels::add_sinusoidal_position_encoding_backward", mutates_args=())
def add_sinusoidal_backward_op(grad: Tensor, scale: float, backend: str) -> Tensor:
    # d(x * scale + PE)/dx = scale on every backend: one elementwise multiply, nothing to fuse.
    return grad * scale


@add_sinusoidal_backward_op.register_fake
def _(grad, scale, backend):
    return torch.empty_like(grad)


def _setup(ctx, inputs, output):
    ctx.scale, ctx.backend = inputs[3], inputs[4]


def _backward(ctx, grad):
    return torch.ops.llmkernels.add_sinusoidal_position_encoding_backward(grad, ctx.scale, ctx.backend), None, None, None, None


def _backward_of_backward(ctx, grad):
    return torch.ops.llmkernels.add_sinusoidal_position_encoding_backward(grad, ctx.scale, ctx.backend), None, None


add_sinusoidal_op.register_autograd(_backward, setup_context=_setup)
add_sinusoidal_backward_op.register_autograd(
    _backward_of_backward, setup_context=lambda ctx, inputs, output: _setup_backward(ctx, inputs)
)


def _setup_backward(ctx, inputs):
    ctx.scale, ctx.backend = inputs[1], inputs[2]
