"""The linear projection, ``y = x @ weight.T + bias``: definitions, fake kernels, autograd and routing.

Registered ops (flat arguments; ``backend`` is the requested backend name, resolved at run time so
that the backward, handed the same string, runs where the forward did):

* ``llmkernels::linear(x, weight, bias, backend) -> Tensor``;
* ``llmkernels::linear_backward(grad, x, weight, need_x, need_weight, need_bias, backend)
  -> (grad_x, grad_weight, grad_bias)``: a gradient not asked for is an empty tensor (a frozen
  weight costs no weight-gradient GEMM).

Why an op for a product torch already has: MKL's sgemm, what ``torch.mm`` calls on a CPU, runs the
products with a transposed operand below its plain rate, and a linear layer is made of them
(``x @ W.T`` forward, ``grad.T @ x`` for the weight). On the ``cpp`` backend the three GEMMs run on
llmkernels' packed CPU GEMM (``csrc/gemm``, through ``ops/common/cpu_gemm.py``) in float32 where the
CPU has AVX2 or AVX-512, torch's GEMM otherwise (other dtypes, small products, older CPUs). The ``reference``
backend is ``F.linear`` and torch's products, and it is what runs on a GPU: cuBLAS is the GEMM to
have there, so there is no Triton or CUDA kernel.

Autocast: the wrapper casts as torch's autocast casts ``F.linear`` (to the region's dtype).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from llmkernels import backends
from llmkernels.ops.common import cpu_gemm
from llmkernels.ops.common.registration import KernelFamily, register_backends
from llmkernels.ops.linear import reference
from llmkernels.ops.linear.arguments import check_grad, check_inputs, output_shape

# The cpp backend's kernel is the extension's gemm_cpu (its probe checks the build has it).
KERNELS = KernelFamily("linear", ("gemm",), "")
register_backends("linear", KERNELS, kernels=("cpp",))


def _rows(x: Tensor) -> Tensor:
    """x as (rows, last dimension): a view where the strides allow (the GEMM reads any strides).
    The row count is spelled out: reshape(-1, 0) of an empty tensor is ambiguous to torch."""
    return x.reshape(math.prod(x.shape[:-1]), x.shape[-1])


def _nothing(like: Tensor) -> Tensor:
    return like.new_empty((0,))


@torch.library.custom_op("llmkernels::linear", mutates_args=())
def linear_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], backend: str) -> Tensor:
    check_inputs(x, weight, bias)
    chosen = backends.resolve("linear", x.device, x.dtype, backend)
    if chosen == "reference":
        return reference.linear(x, weight, bias)
    out = torch.empty(output_shape(x, weight), dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out
    x_rows, out_rows, weight_t = _rows(x), out.view(-1, weight.shape[0]), weight.t()
    if bias is not None and not cpu_gemm.uses_own_gemm(x_rows, weight_t, chosen):
        torch.addmm(bias, x_rows, weight_t, out=out_rows)  # torch's one call, as F.linear makes it
        return out
    cpu_gemm.mm_into(x_rows, weight_t, out_rows, chosen)
    if bias is not None:
        out_rows.add_(bias)
    return out


@torch.library.custom_op("llmkernels::linear_backward", mutates_args=())
def linear_backward_op(grad: Tensor, x: Tensor, weight: Tensor, need_x: bool, need_weight: bool, need_bias: bool,
                       backend: str) -> tuple[Tensor, Tensor, Tensor]:
    check_grad(grad, x, weight)
    chosen = backends.resolve("linear", x.device, x.dtype, backend)
    grad_rows, x_rows = _rows(grad), _rows(x)
    if chosen == "reference":
        grad_x, grad_weight, grad_bias = reference.linear_backward(grad_rows, x_rows, weight, need_x, need_weight, need_bias)
    else:
        grad_x = torch.empty(grad_rows.shape[0], weight.shape[1], dtype=x.dtype, device=x.device) if need_x else None
        grad_weight = torch.empty(weight.shape, dtype=weight.dtype, device=weight.device) if need_weight else None
        if grad_x is not None and grad_x.numel():
            cpu_gemm.mm_into(grad_rows, weight, grad_x, chosen)
        if grad_weight is not None and grad_weight.numel():
            cpu_gemm.mm_into(grad_rows.t(), x_rows, grad_weight, chosen)
        grad_bias = grad_rows.sum(0) if need_bias else None
    # Every gradient is a fresh dense product or sum: nothing to make contiguous.
    return (
        grad_x.reshape(x.shape) if need_x else _nothing(x),
        grad_weight if need_weight else _nothing(weight),
        grad_bias if need_bias else _nothing(weight),
    )


@linear_op.register_fake
def _(x, weight, bias, backend):
    check_inputs(x, weight, bias)
    return x.new_empty(output_shape(x, weight))


@linear_backward_op.register_fake
def _(grad, x, weight, need_x, need_weight, need_bias, backend):
    check_grad(grad, x, weight)
    return (
        x.new_empty(x.shape) if need_x else _nothing(x),
        weight.new_empty(weight.shape) if need_weight else _nothing(weight),
        weight.new_empty((weight.shape[0],)) if need_bias else _nothing(weight),
    )


def _setup(ctx, inputs, output):
    x, weight, bias, backend = inputs
    ctx.save_for_backward(x, weight)
    ctx.has_bias, ctx.backend = bias is not None, backend


def _gradients(ctx, grad):
    x, weight = ctx.saved_tensors
    need_x, need_weight, need_bias = ctx.needs_input_grad[:3]
    grad_x, grad_weight, grad_bias = torch.ops.llmkernels.linear_backward(
        grad, x, weight, need_x, need_weight, need_bias and ctx.has_bias, ctx.backend
    )
    return (grad_x if need_x else None, grad_weight if need_weight else None,
            grad_bias if need_bias and ctx.has_bias else None, None)


linear_op.register_autograd(_gradients, setup_context=_setup)
