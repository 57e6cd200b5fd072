"""Whether Triton kernels can run here.

On CUDA, Triton needs only to import. On a CPU, Triton runs kernels only through its
interpreter, and only when ``TRITON_INTERPRET=1`` was set before the kernels were defined
(the variable is read at decoration time); its bf16 ``tl.dot`` is wrong there, so bf16 is
refused on the CPU rather than answered wrongly.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch


@functools.lru_cache(maxsize=None)
def _importable() -> bool:
    return importlib.util.find_spec("triton") is not None


# Read once, when llmkernels is imported, which is before any of its kernels are defined.
_INTERPRET_AT_IMPORT = os.environ.get("TRITON_INTERPRET") == "1"


def interpreter_active() -> bool:
    return _INTERPRET_AT_IMPORT


def probe(device_type: str) -> tuple[bool, str]:
    if not _importable():
        return False, "triton is not installed"
    if device_type == "cpu":
        if not interpreter_active():
            return False, "Triton runs on a CPU only with TRITON_INTERPRET=1 set before import"
        return True, "Triton interpreter (TRITON_INTERPRET=1)"
    if device_type == "cuda":
        return (True, "triton") if torch.cuda.is_available() else (False, "no CUDA device")
    return False, f"does not run on {device_type}"


def refuses(device_type: str, dtype: torch.dtype) -> str | None:
    if device_type == "cpu" and dtype == torch.bfloat16:
        return "refuses bfloat16 under the CPU interpreter (its bf16 tl.dot is wrong)"
    return None
