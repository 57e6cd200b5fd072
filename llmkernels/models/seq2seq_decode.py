"""Batched greedy and beam-search decoding of a ``Seq2Seq``.

Both encode the batch once and then step the decoder token by token. ``cache=True`` (the default)
steps with the decoder's caches (``DecoderState``: self-attention keys/values appended, the encoder
output's cross-attention keys/values projected once); ``cache=False`` recomputes the whole prefix
at every step, the baseline the caches are measured against (benchmarks/bench_translate.py). Both
give the same tokens.

Beam search keeps ``beam`` hypotheses per sentence, ranked by their summed log-probability; a
hypothesis that has ended stays in its beam and only extends by end-of-sequence at no cost, so
every row steps in lockstep (one batched forward per step; the first runs one row per sentence,
whose beams are still identical). The best finished hypothesis is chosen
with GNMT's length penalty, score / ((5 + length) / 6) ** length_penalty (0: none). With
``beam=1`` it is greedy decoding.
"""

from __future__ import annotations

import torch


class _Stepper:
    """The next-token logits of each row's prefix, with the caches or by recomputing the prefix.

    ``memory`` has a row per sentence, and so has the decoder until the first ``advance`` gives
    each sentence its rows (its beams). The caches keep the sentence's cross-attention keys/values
    once for all its rows; the recomputing baseline, as a decoder without caches does, copies the
    encoder output per row and projects it again at every step.

    ``advance(origin, token)`` moves to the next step: row r continues row ``origin[r]`` with
    ``token[r]``. With the caches the step needs only the new tokens, and the caches' reorder is
    deferred to the next ``logits`` call, so the step after the last one (the longest cache)
    copies nothing; the baseline rebuilds the whole prefix, which it runs again."""

    def __init__(self, model, memory, mask, max_len: int, cache: bool, bos: int):
        self.tokens = torch.full((memory.shape[0], 1), bos, dtype=torch.long, device=memory.device)
        self._pending = None
        self.state = model.start_decoding(memory, mask, max_len) if cache else None
        self.model, self.memory, self.mask = model, memory, mask

    def logits(self):
        if self.state is not None:
            if self._pending is not None:
                self.state.reorder(self._pending)
                self._pending = None
            hidden = self.model.decode_hidden(self.tokens, None, state=self.state)
        else:
            hidden = self.model.decode_hidden(self.tokens, self.memory, self.mask)
        return self.model.lm_head(hidden[:, -1]).float()

    def advance(self, origin, token):
        if self.state is not None:
            self._pending = origin
            self.tokens = token[:, None]
            return
        if origin is not None and origin.shape[0] != self.memory.shape[0]:
            # Rows added (a sentence's beams): the baseline's encoder output follows them. Later
            # steps move rows only within a sentence, whose rows hold the same memory.
            self.memory = self.memory[origin]
            self.mask = None if self.mask is None else self.mask[origin]
        self.tokens = torch.cat((self.tokens if origin is None else self.tokens[origin], token[:, None]), dim=1)


def _prepare(model, src, src_mask, max_len):
    if src.dim() != 2:
        raise ValueError(f"src must be (batch, src_len) token ids; got shape {tuple(src.shape)}")
    if src_mask is None:
        src_mask = torch.ones_like(src, dtype=torch.bool)
    limit = model.config.max_tgt_len - 1  # the start token takes a position
    max_len = limit if max_len is None else min(max_len, limit)
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1; got {max_len}")
    mask = None if bool(src_mask.all()) else src_mask
    return model.encode(src, mask), mask, max_len


def _trim(rows: torch.Tensor, eos: int) -> list[list[int]]:
    """Each row's tokens up to (not including) its first end-of-sequence."""
    out = []
    for row in rows.tolist():
        out.append(row[:row.index(eos)] if eos in row else row)
    return out


@torch.no_grad()
def greedy(model, src, src_mask=None, max_len: int | None = None, cache: bool = True) -> list[list[int]]:
    """The most likely next token at each step; returns each sentence's target ids (no start/end tokens)."""
    c = model.config
    memory, mask, max_len = _prepare(model, src, src_mask, max_len)
    stepper = _Stepper(model, memory, mask, max_len + 1, cache, c.bos_id)
    finished = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    steps = []
    for _ in range(max_len):
        nxt = stepper.logits().argmax(dim=-1)
        nxt = nxt.masked_fill(finished, c.eos_id)
        steps.append(nxt)
        stepper.advance(None, nxt)
        finished |= nxt == c.eos_id
        if bool(finished.all()):
            break
    return _trim(torch.stack(steps, dim=1), c.eos_id)


def length_penalty_factor(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT's ((5 + length) / 6) ** alpha."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


@torch.no_grad()
def beam_search(model, src, src_mask=None, beam: int = 4, length_penalty: float = 0.6, max_len: int | None = None,
                cache: bool = True) -> list[list[int]]:
    """The best of ``beam`` hypotheses per sentence (see the module's docstring); returns target ids."""
    if isinstance(beam, bool) or not isinstance(beam, int) or beam < 1:
        raise ValueError(f"beam must be a positive int; got {beam!r}")
    if not length_penalty >= 0:
        raise ValueError(f"length_penalty must be >= 0; got {length_penalty!r}")
    c = model.config
    batch, device = src.shape[0], src.device
    memory, mask, max_len = _prepare(model, src, src_mask, max_len)
    stepper = _Stepper(model, memory, mask, max_len + 1, cache, c.bos_id)
    rows = batch * beam
    first_row = (torch.arange(batch, device=device) * beam)[:, None]
    # A sentence's best `beam` continuations are among the best `beam` tokens of each of its rows:
    # only those are ranked across the beams. The log-probabilities come from one fused
    # log_softmax whose top tokens are the logits' own (a logsumexp beside a topk of the logits
    # ran five passes over (rows, vocab) instead of three: ~a fifth of that part of a step).
    width = min(beam, c.tgt_vocab_size)
    # An ended hypothesis's candidates: end-of-sequence at no cost, then none.
    ended = torch.full((width,), float("-inf"), device=device)
    ended[0] = 0.0
    # The first step: a sentence's beams would all hold the start token alone, so one row per
    # sentence runs, and its best `width` tokens start the beams (what ranking `beam` identical
    # rows, all but one at -inf, chooses), any beams beyond the vocabulary at -inf.
    top, token = torch.log_softmax(stepper.logits(), dim=-1).topk(width, dim=-1)
    scores = torch.full((batch, beam), float("-inf"), device=device)
    scores[:, :width] = top
    token = torch.cat((token, token.new_full((batch, beam - width), c.eos_id)), dim=1).view(-1)
    origin = torch.arange(batch, device=device).repeat_interleave(beam)
    stepper.advance(origin, token)
    finished = token == c.eos_id
    # Each step's (origin, token) per row: the hypotheses are read back once at the end, rather
    # than each row's prefix and length gathered at every step.
    history = [(origin, token)]
    for _ in range(max_len - 1):
        if bool(finished.all()):
            break
        best, candidates = torch.log_softmax(stepper.logits(), dim=-1).topk(width, dim=-1)
        logp = torch.where(finished[:, None], ended, best)
        candidates = candidates.masked_fill(finished[:, None], c.eos_id)
        top, index = (scores.reshape(rows, 1) + logp).view(batch, beam * width).topk(beam, dim=-1)
        origin = (first_row + torch.div(index, width, rounding_mode="floor")).view(-1)
        token = candidates.view(batch, beam * width).gather(1, index).view(-1)
        stepper.advance(origin, token)
        history.append((origin, token))
        finished = finished[origin] | (token == c.eos_id)
        scores = top
    tokens = _read_back(history)
    normalised = scores / length_penalty_factor(_lengths(tokens, c.eos_id), length_penalty).view(batch, beam)
    best = (first_row[:, 0] + normalised.argmax(dim=-1))
    return _trim(tokens[best], c.eos_id)


def _read_back(history) -> torch.Tensor:
    """(rows, steps): each final row's tokens, following its origins back from the last step."""
    row = torch.arange(history[-1][0].shape[0], device=history[-1][0].device)
    tokens = []
    for origin, token in reversed(history):
        tokens.append(token[row])
        row = origin[row]
    return torch.stack(tokens[::-1], dim=1)


def _lengths(tokens: torch.Tensor, eos: int) -> torch.Tensor:
    """Each hypothesis's length for the length penalty: its tokens up to and including its first
    end-of-sequence (after which it only repeats it), or all of them when it has not ended."""
    ended = tokens == eos
    first = ended.int().argmax(dim=1)
    return torch.where(ended.any(dim=1), first + 1, tokens.shape[1])
