"""Whether PyTorch's own bf16 matrix multiplies run natively on this CPU.

oneDNN runs bf16 GEMMs with AVX-512 (BF16 or its emulation on AVX-512 cores) or AMX. On a CPU
with AVX2 at best, torch sends every bf16 ``mm`` to a scalar fallback GEMM: measured on a 2-core
AVX2 EPYC, 1.4 GFLOP/s in bf16 against 53 GFLOP/s in float32 for the same 512x512 product. A bf16
autocast training step there spends nearly all its time in that fallback (one step of the `small`
GPT took minutes instead of a second), whatever llmkernels' own kernels do. Training code warns
once; `llmkernels.info()` says which it is.
"""

from __future__ import annotations

import functools
import warnings

import torch


@functools.lru_cache(maxsize=None)
def cpu_bf16_matmul_is_native() -> bool:
    # The same check torch's CPU matmul makes before handing a bf16 GEMM to oneDNN.
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: the fallback GEMM everywhere
        return False


def emulated_bf16_message(what: str) -> str:
    return (f"{what}: this CPU ({torch.backends.cpu.get_cpu_capability()}) has no native bf16 matrix "
            "multiply, so PyTorch runs bf16 GEMMs in a scalar fallback, tens of times slower than "
            "float32 here; train in float32 (without bf16 autocast) on this machine")


def warn_if_cpu_bf16_matmul_is_emulated(device_type: str, what: str) -> bool:
    """Warns (once per ``what``, by Python's warning filter) when bf16 GEMMs on ``device_type``
    would run in torch's fallback; returns whether they would."""
    emulated = device_type == "cpu" and not cpu_bf16_matmul_is_native()
    if emulated:
        warnings.warn(emulated_bf16_message(what), RuntimeWarning, stacklevel=3)
    return emulated
