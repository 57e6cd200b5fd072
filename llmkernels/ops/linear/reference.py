"""The linear projection in plain PyTorch: the specification every backend is tested against.

    y           = x @ weight.T + bias
    grad_x      = grad @ weight
    grad_weight = grad.T @ x        (x and grad with their leading dimensions as rows)
    grad_bias   = grad summed over the rows

``F.linear`` itself, in the inputs' dtype: torch's GEMMs accumulate half-precision products in
float32 already, and on a GPU (where this is what runs) an upcast copy would cost more than it
says about the answer.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return F.linear(x, weight, bias)


def linear_backward(grad_rows: torch.Tensor, x_rows: torch.Tensor, weight: torch.Tensor,
                    need_x: bool = True, need_weight: bool = True, need_bias: bool = True):
    """(grad_x rows, grad_weight, grad_bias) from (rows, out) grad and (rows, in) x; None for each
    gradient not asked for."""
    return (grad_rows @ weight if need_x else None, grad_rows.t() @ x_rows if need_weight else None,
            grad_rows.sum(0) if need_bias else None)
