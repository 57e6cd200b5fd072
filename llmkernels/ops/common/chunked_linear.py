"""The chunk loop of the fused linear losses (linear_cross_entropy, linear_distillation_loss, ...):
a loss of ``input @ weight.T + bias`` computed chunk of rows by chunk of rows, so that the (N, V)
logits never exist, with the input/weight/bias gradients formed from each chunk's logits
gradient. One copy of it, whatever the row math.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from llmkernels.ops.common.cpu_gemm import mm_into, uses_own_gemm

# Logits per chunk: 8M (32 MB in float32), 256 rows at V = 32K. GEMMs of 256 rows run near the full
# GEMM's rate on the 2-core CPU (64-row ones at about 0.8 of the plain path's step), and the buffer
# stays far below the plain path's (N, V) logits and gradient.
CHUNK_ELEMENTS = 1 << 23

# A bf16/fp16 chunk's weight gradient is added into the float32 sum this many elements at a time:
# on a CPU, add_ of a bf16 tensor into a float32 one first converts the whole operand into a fresh
# float32 temporary (12.6 MB a chunk at (V, H) = (8192, 384), fresh pages at a training step's
# memory peak); slices of 4 MB keep it small enough for the allocator to reuse. CUDA casts the
# operand as it adds (no temporary): one add there.
ACCUMULATE_ELEMENTS = 1 << 20


# On a GPU every chunk reads and writes the (V, H) weight-gradient sum once (8·V·H bytes in float32)
# against 6·rows·H·V flops of its GEMMs: that pass costs about (FLOP rate / bandwidth) · 8/6 / rows
# of the GEMMs' time, ~220/rows on an H200 (700 TFLOP/s bf16, 4.3 TB/s), whatever V and H. So GPU
# chunks are sized in rows, not logits. Measured on an H200 (N = 8192, H = 4096, bf16, f+b against
# F.cross_entropy(x @ W.T)): the CPU sizing (64 rows at V = 128K, 256 at V = 32K) ran 0.13x and
# 0.40x the plain path's speed; 4096-row chunks 1.02x and 0.96x, at 0.39x and 0.41x its peak memory.
GPU_CHUNK_ROWS = 4096


def rows_per_chunk(rows: int, classes: int, chunk_size: int, elements: int = CHUNK_ELEMENTS,
                   device_type: str = "cpu") -> int:
    """``chunk_size`` when given, else as many rows as hold about ``elements`` logits (on a GPU at
    least ``GPU_CHUNK_ROWS``)."""
    if chunk_size > 0:
        return chunk_size
    fitting = elements // max(classes, 1)
    if device_type != "cpu":
        fitting = max(fitting, GPU_CHUNK_ROWS)
    return max(1, min(rows, fitting))


def project(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], out: torch.Tensor,
            backend: str = "reference") -> torch.Tensor:
    """out = x @ weight.T (+ bias), written into ``out``; the ``cpp`` backend's GEMM where it has one
    (``cpu_gemm``)."""
    if bias is None:
        return mm_into(x, weight.t(), out, backend)
    if not uses_own_gemm(x, weight.t(), backend):
        return torch.addmm(bias, x, weight.t(), out=out)
    out.copy_(bias.expand_as(out))
    return mm_into(x, weight.t(), out, backend, accumulate=True)


def add_in_slices(total: torch.Tensor, part: torch.Tensor) -> None:
    """total += part for (rows, cols) tensors of two dtypes, ``ACCUMULATE_ELEMENTS`` at a time on a CPU."""
    if total.device.type != "cpu":
        total.add_(part)
        return
    rows = max(1, ACCUMULATE_ELEMENTS // max(1, part.shape[1]))
    for start in range(0, part.shape[0], rows):
        total[start:start + rows].add_(part[start:start + rows])


def chunked_linear(input, weight, bias, chunk: int, want_grads: bool, accumulate_fp32: bool,
                   process_chunk: Callable[[int, int, torch.Tensor, Optional[torch.Tensor]], None],
                   backend: str = "reference"):
    """Runs ``process_chunk(start, stop, logits, grad)`` on each chunk of rows [start, stop), with
    ``logits`` = input[start:stop] @ weight.T + bias; when ``want_grads`` it must write d(loss)/d(logits)
    into ``grad`` (the logits' own buffer: the row kernels read each element before writing it).
    Returns (grad_input, grad_weight, grad_bias), None when not ``want_grads``; weight and bias
    gradients are summed across chunks in float32 when ``accumulate_fp32``. The logits and weight-
    gradient GEMMs are ``backend``'s (``cpu_gemm``); the input gradient's (a plain product, where
    torch's GEMM is as fast) is torch's."""
    rows, classes = input.shape[0], weight.shape[0]
    grad_input = grad_weight = grad_bias = None
    if want_grads:
        grad_input = torch.empty_like(input, memory_format=torch.contiguous_format)
        accum = torch.float32 if accumulate_fp32 else weight.dtype
        # The first chunk writes the weight gradient and later ones add to it: no zero-fill pass over
        # a (V, H) buffer (zeros only when there is no chunk at all).
        grad_weight = (torch.empty if rows else torch.zeros)(weight.shape, dtype=accum, device=weight.device)
        grad_bias = None if bias is None else torch.zeros(classes, dtype=accum, device=weight.device)
    # One logits buffer, reused by every chunk (a fresh (chunk, V) tensor per chunk makes the
    # allocator grow the heap chunk after chunk); the gradient overwrites the logits in place.
    logits_buffer = torch.empty(min(chunk, rows), classes, dtype=input.dtype, device=input.device)
    # The weight gradient of a chunk when it is summed in another dtype: one buffer for every chunk.
    part = None
    if want_grads and grad_weight.dtype != input.dtype:
        part = torch.empty(weight.shape, dtype=input.dtype, device=weight.device)
    for start in range(0, rows, chunk):
        stop = min(start + chunk, rows)
        x = input[start:stop]
        logits = project(x, weight, bias, logits_buffer[: stop - start], backend)
        grad = logits if want_grads else None
        process_chunk(start, stop, logits, grad)
        if not want_grads:
            continue
        torch.mm(grad, weight, out=grad_input[start:stop])
        if grad_weight.dtype == grad.dtype:
            mm_into(grad.t(), x, grad_weight, backend, accumulate=start > 0)
        else:  # bf16/fp16 GEMM (fp32 accumulation inside), summed across chunks in fp32
            torch.mm(grad.t(), x, out=part)
            grad_weight.copy_(part) if start == 0 else add_in_slices(grad_weight, part)
        if grad_bias is not None:
            grad_bias.add_(grad.sum(0, dtype=grad_bias.dtype))
    return grad_input, grad_weight, grad_bias
