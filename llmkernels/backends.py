"""Backend registry and selection.

Every op registers, per backend, which device types and dtypes it serves and how to tell
whether that backend is present here. Selection follows DESIGN.md:

* an explicit request (``use_backend`` block, else env ``LLMKERNELS_BACKEND``, else ``"auto"``)
  is passed to the op as a plain string, so the op is a pure function of its arguments (which
  keeps ``torch.compile`` honest) and its backward can be handed the same string;
* ``auto`` picks the fastest present backend: ``cpp`` on CPU when built, else ``reference``;
  on CUDA ``triton``, else ``cuda``; never Triton's CPU interpreter;
* an explicit backend that the op, device or dtype lacks raises, naming what is present.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import threading
from typing import Callable, Iterator

import torch

BACKEND_NAMES = ("reference", "cpp", "triton", "cuda")
_CHOICES = BACKEND_NAMES + ("auto",)

_log = logging.getLogger("llmkernels")

# The status ``explain`` gives a backend that an op has no implementation for.
NOT_IMPLEMENTED = "not implemented"

# One stack of `use_backend` names per thread: a block in one thread must neither change the
# backend of another thread's ops nor pop another thread's entry. Dynamo reads and guards on a
# threading.local's attributes, so a block around a compiled function is honoured at trace time.
_requested = threading.local()


def _stack() -> list[str]:
    stack = getattr(_requested, "names", None)
    if stack is None:
        stack = _requested.names = []
    return stack


@dataclasses.dataclass(frozen=True)
class Implementation:
    backend: str
    device_types: tuple[str, ...]
    dtypes: tuple[torch.dtype, ...]
    # Returns (present, reason): reason says why not, or what was found.
    probe: Callable[[str], tuple[bool, str]]
    # Optional per-dtype refusal on a device type, e.g. bf16 under the Triton interpreter.
    refuses: Callable[[str, torch.dtype], str | None] | None = None


_registry: dict[str, dict[str, Implementation]] = {}
# `auto`'s order per device type, first choice first; the first backend that serves the op and
# dtype runs. Every op uses the same order.
_AUTO_ORDER = {"cpu": ("cpp", "reference"), "cuda": ("triton", "cuda", "reference")}


# resolve()'s answers per (op, device type, dtype, requested): every op call resolves its backend,
# and the probes behind a fresh answer (the extension's entry points, Triton's presence) cost tens
# of microseconds each time while what they report is fixed for the process. Only answers are
# kept (an error is raised afresh each time); registering an implementation clears them.
_resolved: dict[tuple[str, str, torch.dtype, str], str] = {}


def register(op: str, impl: Implementation) -> None:
    _registry.setdefault(op, {})[impl.backend] = impl
    _resolved.clear()


def registered_ops() -> list[str]:
    return sorted(_registry)


def implemented_backends(op: str) -> list[str]:
    """The backends ``op`` has an implementation for, whether or not they are present here."""
    return [backend for backend in BACKEND_NAMES if backend in _registry[op]]


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name not in _CHOICES:
        raise ValueError(f"backend must be one of {', '.join(_CHOICES)}; got {name!r}")
    return name


def requested_backend() -> str:
    """The backend asked for right now: innermost ``use_backend`` block, else the env, else auto."""
    stack = getattr(_requested, "names", None)
    if stack:
        return stack[-1]
    name = os.environ.get("LLMKERNELS_BACKEND", "auto") or "auto"
    if name not in _CHOICES:
        raise ValueError(f"LLMKERNELS_BACKEND must be one of {', '.join(_CHOICES)}; got {name!r}")
    return name


def requested_origin() -> str:
    """Where ``requested_backend()`` comes from, for messages."""
    if getattr(_requested, "names", None):
        return "use_backend"
    return "LLMKERNELS_BACKEND" if os.environ.get("LLMKERNELS_BACKEND") else "default"


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run the ops inside the block on backend ``name`` (or ``"auto"``)."""
    stack = _stack()
    stack.append(_check_name(name))
    try:
        yield
    finally:
        stack.pop()


def _device_type(device) -> str:
    if device is None:
        return "cpu"
    return torch.device(device).type


def _present(impl: Implementation, device_type: str) -> tuple[bool, str]:
    if device_type not in impl.device_types:
        return False, f"does not run on {device_type}"
    return impl.probe(device_type)


def available_backends(device="cpu", op: str | None = None) -> list[str]:
    """Backends present for ``device``; with ``op``, those that serve that op.

    Without ``op``, a backend counts when it serves at least one registered op there.
    """
    device_type = _device_type(device)
    ops = [op] if op is not None else registered_ops()
    for name in ops:
        if name not in _registry:
            raise ValueError(f"op must be one of {', '.join(registered_ops())}; got {name!r}")
    found = []
    for backend in BACKEND_NAMES:
        for name in ops:
            impl = _registry[name].get(backend)
            if impl is not None and _present(impl, device_type)[0]:
                found.append(backend)
                break
    return found


def _serves(impl: Implementation, device_type: str, dtype: torch.dtype) -> str | None:
    """None when ``impl`` can run here on ``dtype``, else the reason it cannot."""
    present, reason = _present(impl, device_type)
    if not present:
        return reason
    if dtype not in impl.dtypes:
        return f"does not support {dtype}"
    if impl.refuses is not None:
        return impl.refuses(device_type, dtype)
    return None


def resolve(op: str, device: torch.device, dtype: torch.dtype, requested: str = "auto") -> str:
    """The concrete backend that runs ``op`` for tensors on ``device`` of ``dtype``."""
    key = (op, device.type, dtype, requested)
    chosen = _resolved.get(key)
    if chosen is None:
        chosen = _resolved[key] = _pick(op, device.type, dtype, requested)
    if os.environ.get("LLMKERNELS_LOG") == "1":
        _log_choice(op, chosen, requested, device.type, dtype)
    return chosen


def _pick(op: str, device_type: str, dtype: torch.dtype, requested: str) -> str:
    requested = _check_name(requested)
    impls = _registry[op]
    if requested == "auto":
        for backend in _AUTO_ORDER.get(device_type, ("reference",)):
            impl = impls.get(backend)
            if impl is not None and _serves(impl, device_type, dtype) is None:
                chosen = backend
                break
        else:
            raise RuntimeError(f"llmkernels.{op}: no backend serves {dtype} on {device_type}")
    else:
        impl = impls.get(requested)
        why = "is not implemented for this op" if impl is None else _serves(impl, device_type, dtype)
        if why is not None:
            usable = [b for b, i in impls.items() if _serves(i, device_type, dtype) is None]
            where = "" if device_type in why else f" on {device_type}"
            raise RuntimeError(
                f"llmkernels.{op}: backend {requested!r} {why}{where} (dtype {dtype}); "
                f"present: {', '.join(usable) or 'none'}"
            )
        chosen = requested
    return chosen


def _log_choice(op: str, chosen: str, requested: str, device_type: str, dtype) -> None:
    message = f"llmkernels: {op} -> {chosen} (asked {requested}, {device_type}, {dtype})"
    if _log.hasHandlers():
        _log.info(message)
    else:
        print(message, file=sys.stderr)


def would_run(op: str, device_type: str, dtype: torch.dtype, requested: str) -> tuple[str | None, str | None]:
    """For ``info()`` and the CLI: (the backend ``requested`` would run, None) or (None, the error it would raise)."""
    try:
        return _pick(op, device_type, dtype, requested), None
    except (RuntimeError, ValueError) as error:
        return None, str(error)


def absent_reason(backend: str, device_type: str) -> str | None:
    """None when ``backend`` serves some op on ``device_type``, else why not (for one-line errors)."""
    if backend == "auto" or backend in available_backends(device_type):
        return None
    for op in registered_ops():
        impl = _registry[op].get(backend)
        if impl is not None:
            return _present(impl, device_type)[1]
    return "is not implemented"


def explain(op: str, device_type: str, dtype: torch.dtype) -> tuple[str | None, dict[str, str]]:
    """For ``info()``: the backend ``auto`` would pick, and each backend's status."""
    statuses = {}
    for backend in BACKEND_NAMES:
        impl = _registry[op].get(backend)
        if impl is None:
            statuses[backend] = NOT_IMPLEMENTED
            continue
        why = _serves(impl, device_type, dtype)
        statuses[backend] = "present" if why is None else why
    try:
        chosen = _pick(op, device_type, dtype, "auto")
    except RuntimeError:
        chosen = None
    return chosen, statuses
