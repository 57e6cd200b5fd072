"""Rotary (rotary_embedding, apply_rotary) and the sinusoidal encoding on random shapes, layouts,
dtypes, tables and position ids, on every backend, against the reference in float64."""

import pytest
import torch

pytest.importorskip("hypothesis", reason="the property tests need hypothesis (tools/setup_env.sh installs it)")

from hypothesis import given, strategies as st  # noqa: E402

import llmkernels  # noqa: E402
from tests.property.strategies import backends_of, begin, check, tensors  # noqa: E402

SEQS = st.sampled_from([0, 1, 2, 5, 7, 13])
SMALL = st.sampled_from([1, 2, 3])


def _positions(data, batch, seq, limit):
    """None (arange), (seq,), (1, seq) or (batch, seq) ids in [0, limit)."""
    shape = data.draw(st.sampled_from([None, (seq,), (1, seq), (batch, seq)]))
    if shape is None:
        return None
    dtype = data.draw(st.sampled_from([torch.int64, torch.int32]))
    return data.draw(tensors(shape, dtype, fill=lambda s, g: torch.randint(0, limit, s, generator=g)))


@st.composite
def rotary_problem(draw, dtype, heads_k=False):
    batch, heads, seq = draw(SMALL), draw(SMALL), draw(SEQS)
    half = draw(st.sampled_from([1, 2, 3, 4, 8]))
    head_dim = 2 * half + draw(st.sampled_from([0, 0, 1, 2]))  # columns past rotary_dim pass through
    positions = draw(st.sampled_from([seq, seq + 3])) or 1
    table_dtype = draw(st.sampled_from([torch.float32, dtype]))
    angle = lambda s, g: torch.rand(s, generator=g, dtype=torch.float64) * 6.3  # noqa: E731
    args = dict(
        cos=draw(tensors((positions, half), table_dtype, fill=lambda s, g: angle(s, g).cos())),
        sin=draw(tensors((positions, half), table_dtype, fill=lambda s, g: angle(s, g).sin())),
    )
    return batch, heads, seq, head_dim, positions, args


@pytest.mark.parametrize("backend", backends_of("rotary_embedding"))
@given(data=st.data())
def test_rotary_embedding(backend, data):
    dtype = begin("rotary_embedding", backend, data)
    batch, heads, seq, head_dim, positions, args = data.draw(rotary_problem(dtype))
    args["x"] = data.draw(tensors((batch, heads, seq, head_dim), dtype, grad=True))
    args["position_ids"] = _positions(data, batch, seq, positions)
    interleaved = data.draw(st.booleans())
    check(lambda **a: llmkernels.rotary_embedding(**a, interleaved=interleaved), args, backend)


@pytest.mark.parametrize("backend", backends_of("apply_rotary"))
@given(data=st.data())
def test_apply_rotary(backend, data):
    dtype = begin("apply_rotary", backend, data)
    batch, heads, seq, head_dim, positions, args = data.draw(rotary_problem(dtype))
    args["q"] = data.draw(tensors((batch, heads * data.draw(SMALL), seq, head_dim), dtype, grad=True))
    args["k"] = data.draw(tensors((batch, heads, seq, head_dim), dtype, grad=True))
    args["position_ids"] = _positions(data, batch, seq, positions)
    interleaved = data.draw(st.booleans())
    check(lambda **a: llmkernels.apply_rotary(**a, interleaved=interleaved), args, backend)


@pytest.mark.parametrize("backend", backends_of("add_sinusoidal_position_encoding"))
@given(data=st.data())
def test_add_sinusoidal_position_encoding(backend, data):
    dtype = begin("add_sinusoidal_position_encoding", backend, data)
    batch, seq, d_model = data.draw(SMALL), data.draw(SEQS), data.draw(st.sampled_from([1, 2, 3, 8, 17, 32]))
    args = dict(x=data.draw(tensors((batch, seq, d_model), dtype, grad=True)),
                position_ids=_positions(data, batch, seq, data.draw(st.sampled_from([seq + 1, 1000]))))
    base, scale = data.draw(st.sampled_from([10000.0, 2.0, 500.5])), data.draw(st.sampled_from([1.0, 0.0, -2.5]))
    check(lambda **a: llmkernels.add_sinusoidal_position_encoding(**a, base=base, scale=scale), args, backend)
