"""How an op family binds its kernels to the four backends: one helper for every family.

A family names its kernels once, as entry points (``"attention_forward"``, ``"rotary"``, ...).
The convention that binds them:

* ``cpp``: ``llmkernels._C.<entry>_cpu``;
* ``cuda``: ``llmkernels._C.<entry>_cuda``;
* ``triton``: ``<entry>`` in the family's ``triton_kernels`` module (imported on first use, so
  the package imports without Triton).

``register_backends`` registers reference/cpp/triton/cuda for an op; its cpp and cuda probes also
check that the extension really holds every entry point of the family (an extension built from an
older tree, or with a family switched off, then reads as absent instead of failing at call time).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

from llmkernels import _native, _triton, backends
from llmkernels.ops.common.checks import FLOAT_DTYPES, KERNEL_DTYPES

_EXTENSION_SUFFIX = {"cpp": "cpu", "cuda": "cuda"}


@dataclasses.dataclass(frozen=True)
class KernelFamily:
    """The kernels of one op family: a name for messages, its entry points and its Triton module."""

    name: str
    entry_points: tuple[str, ...]
    triton_module: str

    def kernel(self, backend: str, entry: str) -> Callable:
        """The callable that runs ``entry`` on ``backend`` (cpp, cuda or triton)."""
        if entry not in self.entry_points:
            raise ValueError(f"{self.name} has no kernel {entry!r}; it has {', '.join(self.entry_points)}")
        if backend == "triton":
            return getattr(importlib.import_module(self.triton_module), entry)
        return getattr(_native.extension(), f"{entry}_{_EXTENSION_SUFFIX[backend]}")

    def _missing(self, backend: str) -> list[str]:
        names = [f"{entry}_{_EXTENSION_SUFFIX[backend]}" for entry in self.entry_points]
        return [name for name in names if not hasattr(_native.extension(), name)]

    def _probe(self, backend: str, extension_probe, device_type: str) -> tuple[bool, str]:
        present, why = extension_probe(device_type)
        if not present:
            return present, why
        missing = self._missing(backend)
        if missing:
            return False, f"llmkernels._C was built without the {self.name} kernels ({', '.join(missing)})"
        return present, why

    def cpp_probe(self, device_type: str) -> tuple[bool, str]:
        return self._probe("cpp", _native.cpu_probe, device_type)

    def cuda_probe(self, device_type: str) -> tuple[bool, str]:
        return self._probe("cuda", _native.cuda_probe, device_type)


def _reference_probe(device_type: str) -> tuple[bool, str]:
    return True, "plain PyTorch"


def register_backends(op: str, family: KernelFamily, kernels: tuple[str, ...] = ("cpp", "triton", "cuda")) -> None:
    """Register ``op``'s implementations: reference everywhere (float64 too), and the kernels of
    ``family`` on cpp (CPU), triton (CUDA; the CPU only under the interpreter) and cuda, or on
    the subset ``kernels`` names (an op whose kernels exist on fewer backends)."""
    backends.register(op, backends.Implementation("reference", ("cpu", "cuda"), FLOAT_DTYPES, _reference_probe))
    if "cpp" in kernels:
        backends.register(op, backends.Implementation("cpp", ("cpu",), KERNEL_DTYPES, family.cpp_probe))
    if "triton" in kernels:
        backends.register(
            op, backends.Implementation("triton", ("cpu", "cuda"), KERNEL_DTYPES, _triton.probe, _triton.refuses)
        )
    if "cuda" in kernels:
        backends.register(op, backends.Implementation("cuda", ("cuda",), KERNEL_DTYPES, family.cuda_probe))
