"""The distillation family (full and top-k teachers, plain and fused with the projection) and
topk_logprobs on random shapes, layouts, dtypes and options, on every backend, against the
reference in float64."""

import pytest
import torch

pytest.importorskip("hypothesis", reason="the property tests need hypothesis (tools/setup_env.sh installs it)")

from hypothesis import given, strategies as st  # noqa: E402

import llmkernels  # noqa: E402
from tests.helpers import TOLERANCES  # noqa: E402
from tests.property.strategies import (  # noqa: E402
    backends_of, begin, check, sizes, sizes_or_empty, targets, tensors,
)

# Logits spread by 6 at temperature 0.5 (scores of ~40) cost float32 itself more than the table's
# 1e-5 in the reverse-KL gradient (the reference in float32 against float64): ordinary spreads only.
LOGIT_SCALES = st.sampled_from([1.0, 3.0])
ROW_LAYOUTS = ("contiguous", "strided_rows", "offset", "expanded")  # rows stay whole: ids unique per row


@st.composite
def options(draw):
    return dict(
        temperature=draw(st.sampled_from([1.0, 0.5, 2.0])),
        beta=draw(st.sampled_from([0.0, 0.5, 1.0])),
        hard_weight=draw(st.sampled_from([0.0, 0.3, 1.0])),
        reduction=draw(st.sampled_from(["mean", "sum", "none"])),
        scale_by_temperature=draw(st.booleans()),
        softcap=draw(st.sampled_from([None, 4.0])),
        return_parts=True,
    )


def _target(data, rows, vocab, opts):
    """A target, or none (and then no hard part)."""
    if not data.draw(st.booleans()):
        opts["hard_weight"] = 0.0
        return None
    return targets(data.draw, (rows,), vocab, -100, data.draw(st.sampled_from([0.0, 0.3, 1.0])))


@st.composite
def teacher_topk(draw, rows, vocab, k, dtype):
    """(ids, logprobs) as topk_logprobs would store them: k distinct ids a row and the teacher's
    log-probabilities there (their exp sums to at most 1; the rest is the tail)."""
    seed = draw(st.integers(0, 2**31 - 1))

    def ids(shape, g):
        return torch.rand(shape[0], vocab, generator=torch.Generator().manual_seed(seed)).argsort(-1)[:, :shape[1]]

    def logprobs(shape, g):
        full = torch.randn(shape[0], vocab, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
        return full.log_softmax(-1).gather(-1, ids(shape, g))
    layout = draw(st.sampled_from(ROW_LAYOUTS))
    return (draw(tensors((rows, k), torch.int64, fill=ids, layouts=(layout,))),
            draw(tensors((rows, k), dtype, fill=logprobs, layouts=(layout,))))


def _same_top_values(logits_of, rounded_by=None):
    """The ids output is compared through the values it picks (equal values may come in any order).
    Exactly, where the op ranks the given logits; within ``rounded_by``'s dtype tolerance where it
    ranks logits it computed in that dtype (a projection: values that round to equal ones there
    may come in either order)."""
    def compare(i, got, expected, kwargs):
        if got.is_floating_point():
            return False
        values = logits_of(kwargs)
        assert got.shape == expected.shape
        tolerance = dict(rtol=0, atol=0) if rounded_by is None else TOLERANCES[kwargs[rounded_by].dtype]
        torch.testing.assert_close(values.gather(-1, got.long()), values.gather(-1, expected.long()), **tolerance)
        return True
    return compare


@pytest.mark.parametrize("backend", backends_of("distillation_loss"))
@given(data=st.data())
def test_distillation_loss(backend, data):
    dtype = begin("distillation_loss", backend, data)
    rows, vocab = data.draw(sizes_or_empty), data.draw(sizes)
    teacher_vocab = data.draw(st.sampled_from([vocab, vocab + 2]))
    opts = data.draw(options())
    args = dict(
        student_logits=data.draw(tensors((rows, vocab), dtype, grad=True, scale=data.draw(LOGIT_SCALES))),
        teacher_logits=data.draw(tensors((rows, teacher_vocab), dtype, scale=data.draw(LOGIT_SCALES))),
        target=_target(data, rows, vocab, opts),
    )
    check(lambda **a: llmkernels.distillation_loss(**a, **opts), args, backend)


@pytest.mark.parametrize("backend", backends_of("topk_logprobs"))
@given(data=st.data())
def test_topk_logprobs(backend, data):
    dtype = begin("topk_logprobs", backend, data)
    rows, vocab = data.draw(sizes_or_empty), data.draw(sizes)
    k = data.draw(st.integers(1, vocab))
    temperature, softcap = data.draw(st.sampled_from([1.0, 0.5, 3.0])), data.draw(st.sampled_from([None, 2.0]))
    args = dict(logits=data.draw(tensors((rows, vocab), dtype)))
    check(lambda **a: llmkernels.topk_logprobs(**a, k=k, temperature=temperature, softcap=softcap), args, backend,
          compare_output=_same_top_values(lambda kw: kw["logits"].double()))


@pytest.mark.parametrize("backend", backends_of("topk_distillation_loss"))
@given(data=st.data())
def test_topk_distillation_loss(backend, data):
    dtype = begin("topk_distillation_loss", backend, data)
    rows, vocab = data.draw(sizes_or_empty), data.draw(sizes)
    k = data.draw(st.integers(1, vocab))
    opts = data.draw(options())
    ids, logprobs = data.draw(teacher_topk(rows, vocab, k, dtype))
    args = dict(student_logits=data.draw(tensors((rows, vocab), dtype, grad=True)), teacher_ids=ids,
                teacher_logprobs=logprobs, target=_target(data, rows, vocab, opts))
    check(lambda **a: llmkernels.topk_distillation_loss(**a, **opts), args, backend)


@pytest.mark.parametrize("backend", backends_of("linear_distillation_loss"))
@given(data=st.data())
def test_linear_distillation_loss(backend, data):
    dtype = begin("linear_distillation_loss", backend, data)
    rows, hidden, teacher_hidden, vocab = data.draw(sizes_or_empty), data.draw(sizes), data.draw(sizes), data.draw(sizes)
    opts = data.draw(options())
    biases = data.draw(st.booleans())
    args = dict(
        student_input=data.draw(tensors((rows, hidden), dtype, grad=True)),
        student_weight=data.draw(tensors((vocab, hidden), dtype, grad=True, scale=0.5)),
        teacher_input=data.draw(tensors((rows, teacher_hidden), dtype)),
        teacher_weight=data.draw(tensors((vocab, teacher_hidden), dtype, scale=0.5)),
        target=_target(data, rows, vocab, opts),
        student_bias=data.draw(tensors((vocab,), dtype, grad=True)) if biases else None,
        teacher_bias=data.draw(tensors((vocab,), dtype)) if biases else None,
    )
    chunk_size = data.draw(st.sampled_from([None, 1, 4]))
    check(lambda **a: llmkernels.linear_distillation_loss(**a, **opts, chunk_size=chunk_size), args, backend)


@pytest.mark.parametrize("backend", backends_of("linear_topk_logprobs"))
@given(data=st.data())
def test_linear_topk_logprobs(backend, data):
    dtype = begin("linear_topk_logprobs", backend, data)
    rows, hidden, vocab = data.draw(sizes_or_empty), data.draw(sizes), data.draw(sizes)
    k = data.draw(st.integers(1, vocab))
    bias = data.draw(st.booleans())
    args = dict(input=data.draw(tensors((rows, hidden), dtype)), weight=data.draw(tensors((vocab, hidden), dtype)),
                bias=data.draw(tensors((vocab,), dtype)) if bias else None)
    temperature, chunk_size = data.draw(st.sampled_from([1.0, 2.0])), data.draw(st.sampled_from([None, 1, 4]))

    def logits(kw):
        out = kw["input"].double() @ kw["weight"].double().T
        return out if kw["bias"] is None else out + kw["bias"].double()
    check(lambda **a: llmkernels.linear_topk_logprobs(**a, k=k, temperature=temperature, chunk_size=chunk_size), args,
          backend, compare_output=_same_top_values(logits, rounded_by="input"))


@pytest.mark.parametrize("backend", backends_of("linear_topk_distillation_loss"))
@given(data=st.data())
def test_linear_topk_distillation_loss(backend, data):
    dtype = begin("linear_topk_distillation_loss", backend, data)
    rows, hidden, vocab = data.draw(sizes_or_empty), data.draw(sizes), data.draw(sizes)
    k = data.draw(st.integers(1, vocab))
    opts = data.draw(options())
    ids, logprobs = data.draw(teacher_topk(rows, vocab, k, dtype))
    args = dict(
        student_input=data.draw(tensors((rows, hidden), dtype, grad=True)),
        student_weight=data.draw(tensors((vocab, hidden), dtype, grad=True, scale=0.5)),
        teacher_ids=ids, teacher_logprobs=logprobs, target=_target(data, rows, vocab, opts),
        student_bias=data.draw(tensors((vocab,), dtype, grad=True)) if data.draw(st.booleans()) else None,
    )
    chunk_size = data.draw(st.sampled_from([None, 1, 4]))
    check(lambda **a: llmkernels.linear_topk_distillation_loss(**a, **opts, chunk_size=chunk_size), args, backend)
