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

from llmkernels import backends
from llmkernels.ops.common.layout import finish_output, kernel_input, kernel_output, new_output_like
from llmkernels.ops.common.positions import normalize_positions
from llmkernels.ops.common.registration import KernelFamily, register_backends
from llmkernels.ops.sinusoidal import reference
from llmkernels.ops.sinusoidal.arguments import check_arguments

OP = "add_sinusoidal_position_encoding"
KERNELS = KernelFamily("sinusoidal", ("add_sinusoidal",), "llmkernels.ops.sinusoidal.triton_kernels")

register_backends(OP, KERNELS)


# The cpp kernel reads PE rows of positions below its table and computes the others from the
# angles: the table is what training reuses (built by the reference formula, cached by size), and
# it is bounded, so that one huge position id costs one computed row, not a table up to it.
# Sizes are powers of two, so generation (seq 1, one position further each token) rebuilds it a
# logarithmic number of times, not every token.
TABLE_MIN_ROWS = 2048


def cpu_table_rows(seq: int, max_position: int) -> int:
    """Rows of the cpp table for a call of seq positions whose largest is max_position."""
    needed = min(max_position + 1, max(seq, TABLE_MIN_ROWS))
    return 1 << max(needed - 1, 0).bit_length()


@functools.lru_cache(maxsize=8)
def _cpu_table(num_positions: int, d_model: int, base: float) -> tuple[Tensor, Tensor]:
    table = reference.encoding(torch.arange(num_positions), d_model, base).contiguous()
    return table, reference.inverse_frequencies(d_model, base).contiguous()


def _add_into(backend: str, x: Tensor, out: Tensor, position_ids, base: float, scale: float) -> None:
    chosen = backends.resolve(OP, x.device, x.dtype, backend)
    positions = normalize_positions(position_ids)
    if x.numel() == 0:
        return
    if chosen == "reference":
        out.copy_(reference.add_encoding(x, positions, base, scale))
        return
    source, target = kernel_input(x), kernel_output(out)
    kernel = KERNELS.kernel(chosen, "add_sinusoidal")
    if chosen == "cpp":
        largest = x.shape[1] - 1 if positions is None else int(positions.max())
        table, inv_freq = _cpu_table(cpu_table_rows(x.shape[1], largest), x.shape[2], float(base))
        kernel(source, target, table, inv_freq, positions, float(scale))
    else:  # the GPU kernels compute PE on the fly from the inverse frequencies
        inv_freq = reference.inverse_frequencies(x.shape[2], float(base), x.device).contiguous()
        kernel(source, target, inv_freq, positions, float(scale))
    finish_output(out, target)


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
    # Resolved like every backward, so that a backend the forward could not have run on raises
    # and LLMKERNELS_LOG names it; d(x * scale + PE)/dx = scale is one elementwise multiply, which
    # torch's own kernel does on every backend (a fused kernel would have nothing to fuse).
    backends.resolve(OP, grad.device, grad.dtype, backend)
    return grad * scale


@add_sinusoidal_backward_op.register_fake
def _(grad, scale, backend):
    return torch.empty_like(grad)


def _setup(ctx, inputs, output):
    _, _, _, ctx.scale, ctx.backend = inputs


def _backward(ctx, grad):
    grad_x = torch.ops.llmkernels.add_sinusoidal_position_encoding_backward(grad, ctx.scale, ctx.backend)
    return grad_x, None, None, None, None


def _setup_backward(ctx, inputs, output):
    _, ctx.scale, ctx.backend = inputs


def _backward_of_backward(ctx, grad):
    grad_grad = torch.ops.llmkernels.add_sinusoidal_position_encoding_backward(grad, ctx.scale, ctx.backend)
    return grad_grad, None, None


add_sinusoidal_op.register_autograd(_backward, setup_context=_setup)
add_sinusoidal_backward_op.register_autograd(_backward_of_backward, setup_context=_setup_backward)
