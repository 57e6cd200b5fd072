"""Tolerances (one table, never loosened to pass) and backend parametrisation."""

from __future__ import annotations

import os

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import llmkernels
from llmkernels import _native

# Max |a - b| <= atol + rtol * |b|, against a float64 reference.
TOLERANCES = {
    torch.float64: dict(rtol=1e-10, atol=1e-10),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=1e-2, atol=1e-2),
    torch.bfloat16: dict(rtol=1e-2, atol=1e-2),
}

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None):
    tol = TOLERANCES[dtype or actual.dtype]
    torch.testing.assert_close(actual.double(), expected.double(), **tol)


# Which device each non-reference backend can run on; triton runs on a CPU only under the
# interpreter, which refuses bf16 (its bf16 `tl.dot` is wrong; the refusal is tested separately).
_BACKEND_DEVICES = {"cpp": ("cpu",), "triton": ("cpu", "cuda"), "cuda": ("cuda",)}


def _can_ever_run(device: str, backend: str, dtype: torch.dtype) -> bool:
    if device not in _BACKEND_DEVICES[backend]:
        return False
    return not (backend == "triton" and device == "cpu" and dtype == torch.bfloat16)


def backend_cases(op: str, dtypes=(torch.float32, torch.float16, torch.bfloat16)):
    """(device, backend, dtype) for every non-reference backend that could run on a device of
    this machine: CUDA cases exist only where CUDA does (a GPU run collects them, marked `gpu`),
    so a CPU run lists no case that can never run. A backend that could run but is not built
    here still skips, with the reason; a backend the op has no implementation of is left out."""
    cases = []
    implemented = llmkernels.backends.implemented_backends(op)
    for device in DEVICES:
        for backend in (b for b in _BACKEND_DEVICES if b in implemented):
            for dtype in dtypes:
                if not _can_ever_run(device, backend, dtype):
                    continue
                marks = [pytest.mark.gpu] if device == "cuda" else []
                cases.append(pytest.param(device, backend, dtype, marks=marks, id=f"{device}-{backend}-{str(dtype)[6:]}"))
    return cases


def skip_unless_present(op: str, device: str, backend: str, dtype: torch.dtype) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    if backend not in llmkernels.available_backends(device, op):
        if backend in ("cpp", "cuda") and os.environ.get("LLMKERNELS_REQUIRE_EXTENSION") == "1" \
                and not _native.build_info()["built"]:
            # CI and the GPU check build the extension: its absence is a failed build, not a skip.
            pytest.fail(f"{backend} is missing because the extension was not built: {_native.build_info().get('reason')}")
        pytest.skip(f"{backend} not present on {device}")
    if backend == "triton" and device == "cpu" and dtype == torch.bfloat16:
        pytest.skip("the Triton interpreter refuses bf16 (tested separately)")
    if backend == "cpp" and device != "cpu" or backend == "cuda" and device != "cuda":
        pytest.skip(f"{backend} does not run on {device}")


def assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None,
                        terms: float = 1.0):
    """The table's tolerances relative to the tensor's own scale (max |expected|, at least 1): for
    gradients that sum many rounded terms, where an element near zero has no meaningful rtol.
    ``terms``, where given, is the size of the terms the elements are formed from when they can
    cancel far below them (rms_norm's dx): rounding is relative to those, not to the result."""
    scale = expected.double().abs().max().clamp_min(max(terms, 1.0)) if expected.numel() else 1.0
    tol = TOLERANCES[dtype or actual.dtype]
    torch.testing.assert_close(actual.double() / scale, expected.double() / scale, **tol)


class CastCounter(TorchDispatchMode):
    """Counts the dtype conversions (aten._to_copy, aten.copy_) of tensors with ``numel`` elements
    dispatched inside it: how a test sees that a fused path runs no cast kernel of its own."""

    def __init__(self, numel: int):
        super().__init__()
        self.numel, self.casts = numel, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default) and args[0].numel() == self.numel:
            self.casts += 1
        return func(*args, **(kwargs or {}))


def assert_compiled_matches_eager(step, leaves, compiler: str):
    """``step`` under ``torch.compile(fullgraph=True, backend=compiler)`` against eager, forward and
    backward. ``step`` returns tensors, never a loss it sums itself: inductor reorders a sum, and a
    reordered float32 sum of many terms differs from eager by more than any tight tolerance, while
    each element of an op's output (and, with the same cotangents, each gradient) must not."""
    compiled = torch.compile(step, fullgraph=True, backend=compiler)
    got, want = compiled(*leaves), step(*leaves)
    got, want = (got,) if torch.is_tensor(got) else tuple(got), (want,) if torch.is_tensor(want) else tuple(want)
    cotangents = [torch.randn_like(w) for w in want]
    got_grads = torch.autograd.grad(got, leaves, cotangents)
    want_grads = torch.autograd.grad(want, leaves, cotangents)
    for actual, expected in zip(got + got_grads, want + want_grads):
        torch.testing.assert_close(actual, expected)
