"""An unbiased K-token estimate of a teacher's distribution, what the offline top-K cache stores.

Storing the teacher's K most likely tokens and lumping the rest into one tail bucket is biased: a
token outside the K gets the forward-KL gradient p_i (1 - t_tail / p_tail) (the student's own tail
shape rescaled) instead of p_i - t_i, and with a small teacher the K best hold only part of the mass
(the 300-step tiny teacher's top 32: ~60% on average). Following the idea of random-sampling
distillation ("Sparse Logit Sampling", Anshumann et al. 2025), ``sparse_teacher`` keeps the
``exact`` most likely tokens with their exact probabilities and spends the other n = K - exact slots
on a sample of the rest, weighted so that every token's stored probability q_i has E[q_i] = t_i:

* the rest's mass R is sampled systematically: n points (u + j) / n * R, j = 0..n-1, one uniform u
  per row, over the rest's cumulative mass in vocabulary order; token i is hit floor or ceil of
  n t_i / R times, c_i hits on average, so q_i = R c_i / n is unbiased (and, unlike n independent
  draws, a token of mass >= R / n is never missed);
* a token hit more than once takes one slot (its hits merged), so hits can leave slots free; they
  are filled with tokens that were not hit (the next most likely ones), stored with log 0 = -inf:
  their estimate is 0, as any token's that was not hit, and the ids stay distinct;
* the stored probabilities sum to 1 (float32 rounding aside), so the loss's tail bucket (1 - sum,
  floored at float32's smallest normal) holds only rounding, and the forward-KL gradient p - q of
  ``linear_topk_distillation_loss`` is an unbiased estimate of the online p - t.

With ``exact == K`` it is the plain top-K. ``u`` (N,) uniforms in [0, 1) come from the caller, who
seeds them (``topk_cache``: by the run's seed and the batch's position), so a cache is reproducible.
"""

from __future__ import annotations

import torch


def sparse_teacher(logits: torch.Tensor, k: int, exact: int, temperature: float, u: torch.Tensor):
    """(ids (N, k) int32, logprobs (N, k) float32) for teacher logits (N, V), as the module says:
    the ``exact`` most likely tokens of softmax(logits / temperature) first, then k - exact sampled
    slots (hit tokens, then zero-probability fillers)."""
    if not 0 <= exact <= k <= logits.shape[-1]:
        raise ValueError(f"need 0 <= exact <= k <= vocabulary; got exact={exact}, k={k}, vocabulary={logits.shape[-1]}")
    log_t = torch.log_softmax(logits.float() / temperature, dim=-1)
    top_logprobs, top_ids = torch.topk(log_t, k, dim=-1)
    n = k - exact
    if n == 0:
        return top_ids.to(torch.int32), top_logprobs
    # The rest's masses (float32 holds each to 1e-7 of itself); their cumulative sum, over the whole
    # vocabulary, in float64.
    rest = log_t.exp().scatter_(-1, top_ids[:, :exact], 0.0)
    cumulative = rest.cumsum(-1, dtype=torch.float64)
    mass = cumulative[:, -1:]
    points = (u.double().unsqueeze(-1) + torch.arange(n, dtype=torch.float64, device=u.device)) / n * mass
    # Token i owns [cumulative_{i-1}, cumulative_i): a zero-mass token (the exact ones) owns nothing.
    # A point rounded up to the whole mass would fall past the last token: kept below it.
    points = torch.minimum(points, torch.nextafter(mass, torch.zeros_like(mass)))
    hits = torch.searchsorted(cumulative, points, right=True).clamp_max(logits.shape[-1] - 1)  # nondecreasing
    first = torch.ones_like(hits, dtype=torch.bool)
    first[:, 1:] = hits[:, 1:] != hits[:, :-1]
    first &= mass > 0  # a rest that underflowed to 0 is not sampled: every slot a filler
    counts = (hits.unsqueeze(-1) == hits.unsqueeze(-2)).sum(-1)
    weights = torch.where(first, mass * counts / n, torch.zeros_like(mass))
    # The hit tokens to the front (stable), the fillers after them: the next most likely tokens not hit.
    order = torch.sort((~first).to(torch.int8), dim=-1, stable=True).indices
    hit_ids, hit_weights = hits.gather(-1, order), weights.gather(-1, order)
    candidates = top_ids[:, exact:]
    taken = ((candidates.unsqueeze(-1) == hits.unsqueeze(-2)) & first.unsqueeze(-2)).any(-1)
    fillers = candidates.gather(-1, torch.sort(taken.to(torch.int8), dim=-1, stable=True).indices)
    slot = torch.arange(n, device=u.device)
    distinct = first.sum(-1, keepdim=True)
    is_hit = slot < distinct
    ids = torch.where(is_hit, hit_ids, fillers.gather(-1, (slot - distinct).clamp_min(0)))
    # A token hit by every point holds the rest's whole mass, which float32's exps can round past 1
    # when no token is exact: a log-probability is capped at 0.
    logprobs = torch.where(is_hit, hit_weights.log().clamp_max(0.0), torch.full_like(hit_weights, float("-inf"))).float()
    return (torch.cat([top_ids[:, :exact], ids], dim=-1).to(torch.int32),
            torch.cat([top_logprobs[:, :exact], logprobs], dim=-1))
