"""The float32 GEMMs of the fused linear losses' chunk loop on the CPU: llmkernels' own packed GEMM
(``csrc/gemm``) where it exists, torch's otherwise.

MKL's sgemm (what ``torch.mm`` calls on a CPU) runs the products with a transposed operand,
``x @ W.T`` (the logits) and ``grad.T @ x`` (the weight gradient), below the rate of its plain
product; the packed GEMM reads any layout at one rate (on the losses' large transposed products
1.12-1.25x ``torch.mm`` on Zen 3 with AVX2, 1.13-1.37x on Zen 4 with AVX-512: BENCHMARKS.md,
eleventh and twelfth sessions). It is used only by the ``cpp`` backend (the ``reference`` backend
stays torch's GEMMs: it is the specification), only for float32 CPU tensors, and only where the
selected CPU ISA level is AVX2 or above (elsewhere ``torch.mm``).
"""

from __future__ import annotations

import torch

from llmkernels import _native

# Below about this many multiply-adds a call's fixed costs (threads, packing) outweigh any gain.
MIN_MULTIPLY_ADDS = 1 << 21


def available() -> bool:
    """Whether the extension is built with the GEMM and the selected CPU ISA level has it."""
    module = _native.extension()
    return module is not None and module.gemm_cpu_available()


def uses_own_gemm(a: torch.Tensor, b: torch.Tensor, backend: str) -> bool:
    """Whether ``mm_into`` runs llmkernels' GEMM for these operands under ``backend``."""
    if backend != "cpp" or a.device.type != "cpu" or a.dtype != torch.float32 or b.dtype != torch.float32:
        return False
    return a.shape[0] * a.shape[1] * b.shape[1] >= MIN_MULTIPLY_ADDS and available()


def mm_into(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, backend: str, accumulate: bool = False) -> torch.Tensor:
    """``out = a @ b`` (``out += a @ b`` with ``accumulate``) for 2-D ``a``, ``b`` of any strides and
    ``out`` with a dense last dimension; returns ``out``."""
    if uses_own_gemm(a, b, backend):
        _native.extension().gemm_cpu(a, b, out, accumulate)
    elif accumulate:
        out.addmm_(a, b)
    else:
        torch.mm(a, b, out=out)
    return out
