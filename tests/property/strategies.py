"""What every property test shares: sizes, dtypes, layouts (strided, transposed, expanded views of
the same values), and ``check``, which runs one call on a backend and again on the reference from
the same values (in float64 for float32 inputs), and compares outputs and gradients with the
tolerances of tests/helpers.py."""

from __future__ import annotations

import os
from typing import Callable

import torch
from hypothesis import strategies as st

import llmkernels
from tests.helpers import TOLERANCES, assert_close_scaled, skip_unless_present
from tests.property.counts import EXAMPLES

SIZES = (1, 2, 3, 5, 7, 13, 16, 17, 31)  # 1, odd, prime, a power of two
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# contiguous; dims 0 and -2 swapped (the last dim of a 2-D tensor then strided); every other row;
# every other column (a last dim that is not dense: kernel_input copies it); a size-1 dim expanded
# (stride 0); a storage offset.
LAYOUTS = ("contiguous", "transposed", "strided_rows", "strided_last", "expanded", "offset")

sizes = st.sampled_from(SIZES)
sizes_or_empty = st.sampled_from((0,) + SIZES)


def backends_of(op: str) -> list[str]:
    """The CPU backends the op is implemented on (each test skips, saying why, one not built here)."""
    return [b for b in ("reference", "cpp", "triton") if b in llmkernels.backends.implemented_backends(op)]


def dtypes_for(backend: str):
    # The Triton interpreter refuses bf16 (tested elsewhere); its fp16 stays in the draw.
    return st.sampled_from(DTYPES[:2] if backend == "triton" else DTYPES)


def begin(op: str, backend: str, data) -> torch.dtype:
    """Skips (saying why) a backend not built here; else draws the example's dtype."""
    skip_unless_present(op, "cpu", backend, torch.float32)
    return data.draw(dtypes_for(backend))


def _layout(shape, layout):
    """(the shape to allocate, the view of it that has ``shape``)."""
    shape, n = list(shape), len(shape)
    if layout == "transposed" and n >= 2:
        a, b = 0, n - 2 if n >= 3 else 1
        base = list(shape)
        base[a], base[b] = base[b], base[a]
        return base, lambda t: t.transpose(a, b)
    if layout == "strided_rows" and n >= 1:
        return [2 * shape[0]] + shape[1:], lambda t: t[::2]
    if layout == "strided_last" and n >= 1:
        return shape[:-1] + [2 * shape[-1]], lambda t: t[..., ::2]
    if layout == "expanded" and n >= 2:
        return [1] + shape[1:], lambda t: t.expand(shape)
    if layout == "offset" and n >= 1:
        return [shape[0] + 1] + shape[1:], lambda t: t[1:]
    return shape, lambda t: t


class Arg:
    """One tensor argument: the values (in the dtype the call gets) and the view the op is given."""

    def __init__(self, base, view, grad=False, keep_dtype=False, layout="contiguous"):
        self.base, self.view, self.grad, self.layout = base, view, grad, layout
        self.keep_dtype = keep_dtype  # not cast to float64 for the reference (tables the op takes in float32)

    def __repr__(self):  # what a falsifying example prints; the values follow from the drawn seed
        shape = tuple(self.view(self.base).shape)
        return f"Arg({self.base.dtype} {shape} {self.layout}{' grad' if self.grad else ''})"

    def make(self, float64: bool):
        t = self.base.clone()
        if float64 and t.is_floating_point() and not self.keep_dtype:
            t = t.double()
        if self.grad:
            t.requires_grad_()
        return t, self.view(t)


@st.composite
def tensors(draw, shape, dtype=torch.float32, *, grad=False, scale=1.0, fill=None, layouts=LAYOUTS, keep_dtype=False):
    """A tensor argument of ``shape``: normal values times ``scale`` (or ``fill(shape, generator)``),
    in one of ``layouts``."""
    layout = draw(st.sampled_from(layouts))
    base_shape, view = _layout(shape, layout)
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    values = fill(base_shape, g) if fill is not None else torch.randn(base_shape, generator=g, dtype=torch.float64) * scale
    return Arg(values.to(dtype), view, grad and dtype.is_floating_point, keep_dtype, layout)


def targets(draw, shape, classes, ignore_index=-100, ignored=0.0):
    """Class indices in [0, classes), a fraction ``ignored`` of them ``ignore_index``."""
    def fill(base_shape, g):
        t = torch.randint(0, max(classes, 1), base_shape, generator=g)
        return torch.where(torch.rand(base_shape, generator=g) < ignored, ignore_index, t)
    return draw(tensors(shape, torch.int64, fill=fill))


def _outputs(result) -> tuple:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def _count() -> None:
    EXAMPLES[os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]] += 1


def check(call: Callable, args: dict, backend: str, *, compare_output=None, gradient_terms=None):
    """``call(**args)`` on ``backend`` against ``call`` on the reference, outputs and (for the
    arguments marked ``grad``) gradients. float32 inputs are held to the reference in float64.
    fp16/bf16 inputs are held to the reference on the same inputs (float32 math): the kernels round
    intermediate results to the input dtype at the points the contract names (attention's output
    before the backward's rowsum(dO * O), the fused losses' logits chunks), as flash kernels do
    and as tests/ops holds them. ``compare_output(i, got, expected, kwargs)`` may take over an
    output's comparison (returns True when it did). ``gradient_terms(kwargs)`` may name, per
    argument, the size of the terms its gradient is formed from where they can cancel (see
    tests/helpers.py assert_close_scaled); the gradients are of a sum weighted by 0.5 to 1.5."""
    _count()
    low = [a.base.dtype for a in args.values() if isinstance(a, Arg) and a.base.dtype in (torch.float16, torch.bfloat16)]
    runs = []
    for chosen, float64 in ((backend, False), ("reference", not low)):
        made = {k: v.make(float64) if isinstance(v, Arg) else (None, v) for k, v in args.items()}
        kwargs = {k: view for k, (_, view) in made.items()}
        leaves = {k: leaf for k, (leaf, _) in made.items() if leaf is not None and leaf.requires_grad}
        with llmkernels.use_backend(chosen):
            outputs = _outputs(call(**kwargs))
            grads = _gradients(outputs, leaves)
        runs.append((outputs, grads, kwargs))
    (got, got_grads, kwargs), (expected, expected_grads, _) = runs
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        if compare_output is not None and compare_output(i, g, e, kwargs):
            continue
        assert g.shape == e.shape, (i, g.shape, e.shape)
        if g.is_floating_point() and low:
            # Outputs of fp16/bf16 inputs (and float32 ones computed from them: an lse, a loss part)
            # sum rounded terms, as gradients do: the table's tolerance relative to the output's
            # scale (an attention output near 0 among values of 3 carries the rounding of those).
            finite = torch.isfinite(e)
            torch.testing.assert_close(g[~finite].double(), e[~finite].double(), rtol=0, atol=0, equal_nan=True)
            assert_close_scaled(g[finite], e[finite], dtype=low[0])
        elif g.is_floating_point():
            torch.testing.assert_close(g.double(), e.double(), **TOLERANCES[g.dtype], equal_nan=True,
                                       msg=lambda m: f"output {i}: {m}")
        else:
            assert torch.equal(g, e.to(g.dtype)), f"output {i}"
    terms = gradient_terms(kwargs) if gradient_terms is not None else {}
    for name, g in got_grads.items():
        assert_close_scaled(g, expected_grads[name], dtype=args[name].base.dtype, terms=terms.get(name, 1.0))


def _gradients(outputs, leaves: dict) -> dict:
    """Gradients of a fixed weighted sum of the differentiable outputs (so every output element and
    its position matter) with respect to ``leaves``."""
    if not leaves:
        return {}
    total = 0
    for o in outputs:
        if o.requires_grad:
            w = torch.linspace(0.5, 1.5, o.numel(), dtype=torch.float64).reshape(o.shape)
            total = total + (o.double() * w).sum()
    if not torch.is_tensor(total):
        return {name: torch.zeros_like(leaf) for name, leaf in leaves.items()}
    grads = torch.autograd.grad(total, list(leaves.values()), allow_unused=True)
    return {name: torch.zeros_like(leaf) if g is None else g for (name, leaf), g in zip(leaves.items(), grads)}
