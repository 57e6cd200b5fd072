"""What the GPU resource check (``tools/triton_check.py``, run by ``make cuda-check``) compiles:
every Triton kernel of the package, in every configuration its launcher can choose.

Each family with Triton kernels has a ``triton_cases`` module beside its ``triton_kernels``; its
``cases(capability)`` yields ``TritonCase`` objects built from the same tables and helpers the
launcher uses (tile lists, block-size rules), so a configuration added to a launcher is compiled
by the check the day it is added. ``FAMILIES`` lists the families: adding a family with Triton
kernels is one entry there. Importing this module needs no Triton.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Iterable, Iterator

# One entry per op family with Triton kernels: llmkernels.ops.<family>.triton_cases
FAMILIES = ("attention", "cross_entropy", "distillation", "rms_norm", "rotary", "sinusoidal", "swiglu")

# Input dtypes every kernel serves (Triton's names). REPRESENTATIVE is the one compiled at every
# shape; fp16 shares its layouts, and the others compile at the widest shape (see cover()).
DTYPES = ("fp16", "bf16", "fp32")
REPRESENTATIVE = "bf16"


@dataclasses.dataclass(frozen=True)
class TritonCase:
    """One kernel compile: the kernel, its argument types and constexprs, warps and stages.

    Argument types follow the launch: a ``*_ptr`` argument points to ``dtype`` unless
    ``pointers`` names another type for it; arguments named in ``floats`` are fp32 scalars; every
    other argument is an i32 scalar, divisible by 16 when named in ``divisible`` (the common
    contiguous layout; pointers are always 16-byte aligned, as torch allocates them).

    ``choice`` names the launcher decision this case is one candidate of (same kernel, head dim,
    dtype and switches; the candidates differ in tile, warps or stages): the check requires that
    a launcher never picks a spilling candidate when a spill-free one exists. ``hot`` marks the
    configurations expected to be spill-free.
    """

    module: str
    kernel: str
    dtype: str
    constexprs: tuple[tuple[str, object], ...]
    num_warps: int = 4
    num_stages: int = 3
    pointers: tuple[tuple[str, str], ...] = ()
    floats: tuple[str, ...] = ()
    divisible: tuple[str, ...] = ()
    choice: str = ""
    hot: bool = False

    def signature(self, arg_names: Iterable[str]) -> dict[str, str]:
        consts = dict(self.constexprs)
        ptrs = dict(self.pointers)
        sig = {}
        for name in arg_names:
            if name in consts:
                sig[name] = "constexpr"
            elif name.endswith("_ptr"):
                sig[name] = ptrs.get(name, "*" + self.dtype)
            elif name in self.floats:
                sig[name] = "fp32"
            else:
                sig[name] = "i32"
        return sig

    def aligned(self, arg_names: Iterable[str]) -> list[int]:
        """Indices of the arguments a launch specialises as 16-aligned / divisible by 16."""
        return [i for i, name in enumerate(arg_names) if name.endswith("_ptr") or name in self.divisible]

    def switches(self) -> str:
        """The boolean constexprs that are on, for tables."""
        on = [k for k, v in self.constexprs if v is True]
        return ",".join(on) if on else "-"


def switch_sets(names: tuple[str, ...], common: Iterable[dict] = ()) -> list[dict[str, bool]]:
    """Boolean switch settings that compile every switch on its own and all together: all off,
    each one alone, all on, plus the ``common`` settings (partial dicts, the rest off), without
    repeats. Resources grow with the switches that are on, so all-on bounds every mix."""
    sets = [dict.fromkeys(names, False)]
    sets += [{**dict.fromkeys(names, False), name: True} for name in names]
    sets.append(dict.fromkeys(names, True))
    sets += [{**dict.fromkeys(names, False), **c} for c in common]
    unique = {tuple(s.items()): s for s in sets}
    return list(unique.values())


def powers_of_two(low: int, high: int) -> list[int]:
    return [1 << i for i in range(low.bit_length() - 1, high.bit_length()) if low <= 1 << i <= high]


def product(**axes) -> Iterator[dict]:
    keys = list(axes)
    for values in itertools.product(*(axes[k] for k in keys)):
        yield dict(zip(keys, values))


def cover(shapes: Iterable, names_of, widest, common: Iterable[dict] = ()) -> Iterator[tuple]:
    """(shape, dtype, switches) to compile for a kernel whose launcher picks a shape (block sizes)
    from the problem size: every shape in REPRESENTATIVE with all its switches on (the most code
    and registers); the widest shape in every dtype with none, all and ``common`` on, and in
    REPRESENTATIVE with each switch alone. ``names_of(shape)`` lists the switches a shape takes."""
    for shape in shapes:
        names = tuple(names_of(shape))
        if shape != widest:
            yield shape, REPRESENTATIVE, dict.fromkeys(names, True)
            continue
        for dtype in DTYPES:
            if dtype == REPRESENTATIVE:
                sets = switch_sets(names, common)
            else:
                sets = switch_sets((), ({}, *common, dict.fromkeys(names, True)))
            for flags in sets:
                yield shape, dtype, {**dict.fromkeys(names, False), **flags}
