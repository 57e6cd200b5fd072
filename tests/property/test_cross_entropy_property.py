"""cross_entropy and linear_cross_entropy on random shapes, layouts, dtypes and options, on every
backend, against the reference in float64."""

import pytest
import torch

pytest.importorskip("hypothesis", reason="the property tests need hypothesis (tools/setup_env.sh installs it)")

from hypothesis import given, strategies as st  # noqa: E402

import llmkernels  # noqa: E402
from tests.property.strategies import backends_of, begin, check, sizes, sizes_or_empty, targets, tensors  # noqa: E402

REDUCTIONS = st.sampled_from(["mean", "sum", "none"])


@st.composite
def loss_options(draw):
    return dict(
        reduction=draw(REDUCTIONS),
        label_smoothing=draw(st.sampled_from([0.0, 0.1, 1.0])),
        z_loss=draw(st.sampled_from([0.0, 1e-3])),
        softcap=draw(st.sampled_from([None, 0, 3.0])),
        ignore_index=draw(st.sampled_from([-100, 0])),
    )


@pytest.mark.parametrize("backend", backends_of("cross_entropy"))
@given(data=st.data())
def test_cross_entropy(backend, data):
    dtype = begin("cross_entropy", backend, data)
    rows, classes = data.draw(sizes_or_empty), data.draw(sizes)
    options = data.draw(loss_options())
    spatial = data.draw(st.booleans())  # (N, C, d) like torch's K-dimensional case
    shape, target_shape = ((rows, classes, 3), (rows, 3)) if spatial else ((rows, classes), (rows,))
    args = dict(
        input=data.draw(tensors(shape, dtype, grad=True, scale=data.draw(st.sampled_from([1.0, 8.0])))),
        target=targets(data.draw, target_shape, classes, options["ignore_index"], data.draw(st.sampled_from([0.0, 0.3, 1.0]))),
        weight=data.draw(st.one_of(st.none(), tensors((classes,), dtype, fill=lambda s, g: torch.rand(s, generator=g) + 0.5))),
    )
    check(lambda **a: llmkernels.cross_entropy(**a, **options), args, backend)


@pytest.mark.parametrize("backend", backends_of("linear_cross_entropy"))
@given(data=st.data())
def test_linear_cross_entropy(backend, data):
    dtype = begin("linear_cross_entropy", backend, data)
    rows, hidden, vocab = data.draw(sizes_or_empty), data.draw(sizes), data.draw(sizes)
    options = data.draw(loss_options())
    lead = (rows,) if data.draw(st.booleans()) else (2, rows)
    args = dict(
        input=data.draw(tensors(lead + (hidden,), dtype, grad=True)),
        linear_weight=data.draw(tensors((vocab, hidden), dtype, grad=True, scale=0.5)),
        target=targets(data.draw, lead, vocab, options["ignore_index"], data.draw(st.sampled_from([0.0, 0.3]))),
        linear_bias=data.draw(st.one_of(st.none(), tensors((vocab,), dtype, grad=True))),
    )
    chunk_size = data.draw(st.sampled_from([None, 1, 3]))
    check(lambda **a: llmkernels.linear_cross_entropy(**a, chunk_size=chunk_size, **options), args, backend)
