"""Selective recompute: keep a recipe, not the tensor, for cheap results that a GEMM saves.

A projection saves its input for its weight gradient. When that input is the output of a cheap
element-wise op whose own inputs autograd keeps anyway (a norm's y from its saved h; swiglu's
output from the gate_up it saved), storing it is pure memory: ``saved(t, recompute)`` makes every
save of ``t`` (or of a view of it) inside the block store the recipe instead, and the backward
rebuilds ``t`` once, when the first node that needs it runs. The recipe must give ``t`` bitwise
(the same kernel on the same saved inputs), so the gradients do not change.

The hooks step aside where they cannot help: without grad, under torch.compile, and inside
someone else's saved-tensor hooks (activation checkpointing already recomputes the whole block).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable

import torch

_state = threading.local()


def _recipes() -> list:
    if not hasattr(_state, "recipes"):
        _state.recipes = []
    return _state.recipes


class _Recipe:
    """How to rebuild one tensor; the rebuilt tensor is shared by every node that saved it."""

    __slots__ = ("recompute", "versions", "inputs", "_value")

    def __init__(self, recompute: Callable[[], torch.Tensor], inputs: tuple):
        self.recompute = recompute
        self.inputs = inputs
        self.versions = tuple(t._version for t in inputs)
        self._value = None

    def value(self) -> torch.Tensor:
        if self._value is None:
            if tuple(t._version for t in self.inputs) != self.versions:
                raise RuntimeError("a tensor a recomputed activation is built from was modified in place after "
                                   "the forward; its gradient cannot be formed")
            with torch.no_grad():
                self._value = self.recompute()
        return self._value


class _Packed:
    __slots__ = ("recipe", "shape", "stride", "offset")

    def __init__(self, recipe: _Recipe, t: torch.Tensor):
        self.recipe, self.shape, self.stride, self.offset = recipe, tuple(t.shape), t.stride(), t.storage_offset()


def _pack(t: torch.Tensor):
    key = t.untyped_storage().data_ptr()
    for held, recipe in _recipes():
        if held.untyped_storage().data_ptr() == key and held.dtype == t.dtype:
            return _Packed(recipe, t)
    return t


def _unpack(packed):
    if isinstance(packed, _Packed):
        return packed.recipe.value().as_strided(packed.shape, packed.stride, packed.offset)
    return packed


def _installed() -> int:
    return getattr(_state, "installed", 0)


@contextlib.contextmanager
def _hooks(count: Callable[[torch.Tensor], None] | None = None):
    def pack(t):
        packed = _pack(t)
        if count is not None and packed is t:
            count(t)
        return packed

    _state.installed = _installed() + 1
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, _unpack):
            yield
    finally:
        _state.installed -= 1


def _others_hooks_active() -> bool:
    """Whether saved-tensor hooks other than this module's are active (checkpointing's, a user's).
    torch has no public query; where its private one is missing or differs, assume none."""
    if _installed():
        return False
    try:
        return torch._C._autograd._top_saved_tensors_default_hooks(True) is not None
    except (AttributeError, TypeError):
        return False


@contextlib.contextmanager
def saved(t: torch.Tensor, recompute: Callable[[], torch.Tensor], inputs: tuple = ()):
    """Inside the block, saves of ``t`` keep ``recompute`` (which must return a tensor laid out as
    ``t``: same shape, dtype, dense strides) instead of ``t``; ``inputs`` are the tensors it reads,
    checked for in-place changes (as autograd checks its saved tensors) before it runs."""
    if (not torch.is_grad_enabled() or not t.requires_grad or torch.compiler.is_compiling()
            or not t.is_contiguous() or t.storage_offset() or _others_hooks_active()):
        yield
        return
    recipes = _recipes()
    recipes.append((t, _Recipe(recompute, inputs)))
    try:
        if _installed():  # an outer block's hooks are active already and read every recipe on the stack
            yield
        else:
            with _hooks():
                yield
    finally:
        recipes.pop()


def measuring(count: Callable[[torch.Tensor], None]):
    """A context that calls ``count(t)`` for every tensor autograd saves inside it, except those this
    module keeps as recipes (which work inside it as they would outside): what a memory breakdown
    needs, since other saved-tensor hooks make the recipes step aside."""
    return _hooks(count)
