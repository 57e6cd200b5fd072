"""The compiled extension `llmkernels._C`, loaded on first use.

Nothing imports the extension at package import time: the package must work (on the
`reference` backend) when it was installed without a compiler or with the build switched off.
"""

from __future__ import annotations

import functools
import importlib


@functools.lru_cache(maxsize=None)
def _load():
    try:
        return importlib.import_module("llmkernels._C"), ""
    except ImportError as error:  # not built, or built against another torch
        return None, f"llmkernels._C not importable ({error})"


def extension():
    """The `_C` module, or None when it is not built here."""
    return _load()[0]


def build_info() -> dict:
    module, why = _load()
    if module is None:
        return {"built": False, "reason": why}
    return {"built": True, **module.build_info()}


def cpu_probe(device_type: str) -> tuple[bool, str]:
    module, why = _load()
    if module is None:
        return False, why
    return True, f"built, CPU ISA {module.cpu_isa()}"


def cuda_probe(device_type: str) -> tuple[bool, str]:
    import torch

    module, why = _load()
    if module is None:
        return False, why
    if not module.build_info().get("cuda"):
        return False, "llmkernels._C was built without CUDA kernels"
    if not torch.cuda.is_available():
        return False, "no CUDA device"
    return True, f"built for {module.build_info().get('cuda_archs')}"
