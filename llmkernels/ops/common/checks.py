"""Argument checks shared by every op family: one copy of each, with messages that name the
argument, what was seen and what was expected."""

from __future__ import annotations

import math

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
INDEX_DTYPES = (torch.int32, torch.int64)


def check_tensor(name: str, value, *, ndims: tuple[int, ...] | None = None, dtypes=None) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__}")
    if ndims is not None and value.dim() not in ndims:
        expected = " or ".join(str(n) for n in ndims)
        raise ValueError(f"{name} must have {expected} dimensions; got shape {tuple(value.shape)}")
    if dtypes is not None and value.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise ValueError(f"{name} must have dtype in ({names}); got {value.dtype}")


def check_tensor_types(**arguments) -> None:
    """What a public wrapper checks before it calls its op: that each named argument is a tensor
    (or None where the value given is None). The op validates everything else itself, with the same
    messages; checking it in the wrapper too ran every check twice a call (value checks included).
    Only the types come first, because the op's schema would refuse a non-tensor before the op
    runs, with torch's message instead of one naming the argument."""
    for name, value in arguments.items():
        if value is not None and not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__}")


def check_same_device(name: str, value: torch.Tensor, reference_name: str, reference: torch.Tensor):
    if value.device != reference.device:
        raise ValueError(
            f"{name} is on {value.device} but {reference_name} is on {reference.device}; "
            "they must be on the same device"
        )


def check_dim_size(name: str, value: torch.Tensor, dim: int, expected: int, what: str) -> None:
    if value.shape[dim] != expected:
        raise ValueError(
            f"{name} dimension {dim} must be {expected} ({what}); got shape {tuple(value.shape)}"
        )


def is_symbolic(value) -> bool:
    """True for a scalar that may be symbolic: a ``torch.Sym*`` (fake kernels under
    ``torch.compile(dynamic=True)``), or any scalar while dynamo traces (there a symbolic float
    reads as a float). Its value is unknown until run time: value checks skip it, and the op
    itself checks it when it runs."""
    return isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)) or torch.compiler.is_compiling()


def is_finite_number(value) -> bool:
    """``math.isfinite`` for plain numbers; True for a symbolic one (checked when it is concrete)."""
    return is_symbolic(value) or math.isfinite(value)


def is_fake(tensor: torch.Tensor) -> bool:
    """True while tracing (fake or meta tensors): value checks must wait for real data."""
    from torch._subclasses.fake_tensor import is_fake as _is_fake

    return tensor.device.type == "meta" or _is_fake(tensor)


# The device types whose values are read on the host (checks, the means' denominators): free on a
# CPU, a synchronisation on a GPU, whose tensors get device-side asserts and 0-dim device scalars
# instead. tests/ops/test_no_host_sync.py empties it to run those device paths on a CPU.
HOST_VALUE_DEVICES = ("cpu",)


def can_check_values(tensor: torch.Tensor) -> bool:
    """Value checks read data on the host: only for real CPU tensors (never sync a GPU). While
    dynamo traces, the op's own run-time check does it instead."""
    if torch.compiler.is_compiling():
        return False
    return tensor.device.type in HOST_VALUE_DEVICES and not is_fake(tensor)


def assert_on_device(tensor: torch.Tensor, condition, message: str) -> None:
    """The value check of a tensor the host must not read (see HOST_VALUE_DEVICES): an asynchronous
    device-side assert of ``condition()`` (a bool tensor, all true), raised as a RuntimeError at
    the next synchronisation, before anything reads the result. Needed where an invalid value
    would make a kernel read out of bounds; nothing to check while tracing or for no values."""
    if torch.compiler.is_compiling() or is_fake(tensor) or tensor.numel() == 0:
        return
    torch._assert_async(condition().all(), message)
