"""The offline cache's teacher estimate: distinct ids, probabilities that sum to 1, and an unbiased
estimate of the teacher (the plain top-K, the estimate it replaced, fails the same bound)."""

import math

import pytest
import torch

import llmkernels
from llmkernels.training.sparse_teacher import sparse_teacher

# A hand-made teacher: two large tokens, a rest of 0.5 spread unevenly over ten.
TEACHER = torch.tensor([0.30, 0.20, 0.10, 0.08, 0.07, 0.06, 0.05, 0.04, 0.04, 0.03, 0.02, 0.01], dtype=torch.float64)
K, EXACT = 6, 2


def _dense(ids, logprobs, vocab):
    return torch.zeros(ids.shape[0], vocab, dtype=torch.float64).scatter_(1, ids.long(), logprobs.double().exp())


def _mean_estimate(k, exact, draws):
    u = torch.rand(draws, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    logits = TEACHER.log().float().expand(draws, -1)
    return _dense(*sparse_teacher(logits, k, exact, 1.0, u), TEACHER.numel()).mean(0)


def test_the_estimate_is_unbiased():
    """A sampled token's stored probability is one of the two multiples of the sampling step
    (rest mass / sampled slots) around t_i, taken with the probabilities that make its mean t_i: a
    Bernoulli of standard deviation step * sqrt(f (1 - f)), f = frac(t_i / step); exact tokens do
    not vary. The mean of `draws` rows lies within 5 standard errors of t_i. The bounds are under a
    tenth of each t_i, so a weighting off by 10% for any token fails them, as does the plain top-K
    (which stores 0 for the tokens it leaves out)."""
    draws = 40000
    step = float(TEACHER[EXACT:].sum()) / (K - EXACT)
    frac = torch.frac(TEACHER / step)
    bound = 5 * step * (frac * (1 - frac)).sqrt() / math.sqrt(draws) + 1e-6
    assert bool((bound < 0.1 * TEACHER).all()), bound / TEACHER
    error = (_mean_estimate(K, EXACT, draws) - TEACHER).abs()
    assert bool((error < bound).all()), error / bound
    assert not bool(((_mean_estimate(K, K, draws) - TEACHER).abs() < bound).all())  # the plain top-K is biased


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_ids_are_distinct_and_probabilities_sum_to_one(temperature):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(64, 300, generator=g) * 3
    logits[:4] *= 1000  # peaked rows: the rest's mass underflows, every sampled slot is a filler
    logits[4:8] = 0.0  # flat rows: every token equally likely
    u = torch.rand(64, generator=g, dtype=torch.float64)
    ids, logprobs = sparse_teacher(logits, 32, 16, temperature, u)
    assert ids.dtype == torch.int32 and logprobs.dtype == torch.float32 and ids.shape == logprobs.shape == (64, 32)
    assert all(len(set(row.tolist())) == 32 for row in ids)
    assert not logprobs.isnan().any() and bool((logprobs <= 0).all())
    assert torch.allclose(logprobs.double().exp().sum(-1), torch.ones(64, dtype=torch.float64), atol=1e-5)
    # The exact slots are the teacher's most likely tokens with their log-probabilities (which of
    # the flat rows' equal tokens is free; the peaked rows' logits of ~1e4 round differently).
    top_ids, top_logprobs = llmkernels.topk_logprobs(logits, 16, temperature=temperature)
    assert torch.allclose(logprobs[4:, :16], top_logprobs[4:], atol=1e-5)
    assert torch.equal(ids[:4, :16], top_ids[:4]) and torch.equal(ids[8:, :16], top_ids[8:])
    # The same uniforms give the same estimate.
    again = sparse_teacher(logits, 32, 16, temperature, u)
    assert torch.equal(again[0], ids) and torch.equal(again[1], logprobs)


def test_all_exact_is_the_plain_top_k():
    logits = torch.randn(8, 50, generator=torch.Generator().manual_seed(2))
    ids, logprobs = sparse_teacher(logits, 5, 5, 1.0, torch.zeros(8, dtype=torch.float64))
    top_ids, top_logprobs = llmkernels.topk_logprobs(logits, 5)
    assert torch.equal(ids, top_ids) and torch.allclose(logprobs, top_logprobs, atol=1e-6)


def test_bad_slot_counts_are_refused():
    with pytest.raises(ValueError, match="need 0 <= exact <= k <= vocabulary"):
        sparse_teacher(torch.zeros(2, 4), 5, 2, 1.0, torch.zeros(2, dtype=torch.float64))


def test_a_uniform_next_to_one_stays_on_the_last_token_of_mass():
    """u just below 1 puts the last point at the rest's whole mass after rounding: it must still
    land on a token of the rest (here the last id is one of the exact tokens), not past it."""
    logits = torch.zeros(1, 10)
    logits[0, 9] = 5.0  # the last id is the most likely: exact, zero mass in the rest
    u = torch.tensor([1.0 - 2.0 ** -53], dtype=torch.float64)
    ids, logprobs = sparse_teacher(logits, 6, 2, 1.0, u)
    assert len(set(ids[0].tolist())) == 6 and bool(torch.isfinite(logprobs[0, 2:]).any())
    assert abs(float(logprobs.double().exp().sum()) - 1.0) < 1e-5


def test_no_exact_slot_and_one_token_holding_everything():
    """exact = 0 (every slot sampled) on rows where one token holds ~all the mass: all points hit
    it, its weight is the whole mass, whose float32 exps may sum past 1; stored as log 1 = 0 at
    most, never above (the loss refuses a positive log-probability)."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(256, 2000, generator=g)
    logits[:, 7] = 40.0
    ids, logprobs = sparse_teacher(logits, 8, 0, 1.0, torch.rand(256, generator=g, dtype=torch.float64))
    assert bool((logprobs <= 0).all()) and bool((ids[:, 0] == 7).all())
    assert torch.allclose(logprobs[:, 0], torch.zeros(256), atol=1e-5)
    assert bool(torch.isinf(logprobs[:, 1:]).all())  # the other slots: fillers
