"""Memory layouts the kernels accept, and how outputs are shaped for them.

Every kernel (C++, CUDA, Triton) reads and writes rows as plain arrays: the last dimension must be
dense (stride 1, or of size <= 1 where its stride is never used); every other stride is free.
These helpers copy or allocate only when a tensor breaks that rule.
"""

from __future__ import annotations

import torch


def kernel_input(x: torch.Tensor) -> torch.Tensor:
    """x itself when its last dimension is dense, else a contiguous copy."""
    if x.stride(-1) == 1 or x.shape[-1] <= 1:
        return x
    # clone, not contiguous(): torch calls an empty tensor contiguous whatever its strides, and
    # would hand back a (0, C) row view with a last-dim stride of 2, which the kernels refuse
    return x.clone(memory_format=torch.contiguous_format)


def kernel_rows(x: torch.Tensor) -> torch.Tensor:
    """x as (rows, x.shape[-1]) rows for a row kernel: a view where the layout allows, the last
    dimension dense. One row broadcast to every row (row stride 0, e.g. the gradient of a
    ``.sum()``, stride 0 everywhere) keeps its row stride 0 with that one row made dense: the
    kernels read it from cache instead of a materialised copy."""
    rows = x.reshape(-1, x.shape[-1])
    if rows.stride(-1) == 1 or rows.shape[-1] <= 1:
        return rows
    if rows.shape[0] > 1 and rows.stride(0) == 0:
        return rows[0].contiguous().expand(rows.shape)
    return rows.contiguous()


def new_output_like(x: torch.Tensor) -> torch.Tensor:
    """An output with x's layout where that layout keeps the last dim dense, else a contiguous one."""
    out = torch.empty_like(x)
    if out.dim() and out.stride(-1) != 1 and out.shape[-1] > 1:
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    return out


def kernel_output(out: torch.Tensor) -> torch.Tensor:
    """Where a kernel may write ``out``: out itself when its last dimension is dense, else a
    contiguous temporary to copy back with ``finish_output``."""
    if out.stride(-1) == 1 or out.shape[-1] <= 1:
        return out
    return torch.empty(out.shape, dtype=out.dtype, device=out.device)


def finish_output(out: torch.Tensor, target: torch.Tensor) -> None:
    """Copy a ``kernel_output`` temporary back into ``out`` (nothing when the kernel wrote out)."""
    if target is not out:
        out.copy_(target)
