"""The key/value cache of one attention layer, for decoding token by token."""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values seen so far by one attention layer, (batch, heads_kv, len(cache), head_dim) each.

    ``append(k, v)`` stores the new keys/values and returns all of them so far; ``len(cache)`` is the
    number of positions stored, which is also the position of the next token. The stored keys and
    values take the dtype of the first ones appended (bf16 under autocast). A model keeps one cache per layer.

    ``max_len=None`` grows by concatenation, so gradients flow through the cache (each step copies
    what is stored). ``max_len=N`` allocates N positions at the first append and writes in place,
    with no copies as it fills: the choice for sampling under ``torch.no_grad()`` (writing in place
    would invalidate tensors that autograd saved in earlier steps). Appending past ``max_len`` is
    an error: start a new cache.
    """

    def __init__(self, max_len: int | None = None):
        if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1):
            raise ValueError(f"max_len must be None or a positive int; got {max_len!r}")
        self.max_len = max_len
        self.length = 0
        self._k = self._v = None
        self._spare = None  # reorder's second pair of buffers (preallocated caches)

    def __len__(self):
        return self.length

    def _view(self, stored):
        if stored is None:
            return None
        if self.max_len is None:
            return stored
        return stored[:, :self.length].transpose(1, 2)

    @property
    def k(self):
        return self._view(self._k)

    @property
    def v(self):
        return self._view(self._v)

    def append(self, k, v):
        """Store k and v (batch, heads_kv, new, head_dim); returns the keys and values of every position so far."""
        if k.dim() != 4 or v.shape[:-1] != k.shape[:-1]:
            raise ValueError(f"k and v must be (batch, heads_kv, new, head_dim) alike; got {tuple(k.shape)} and {tuple(v.shape)}")
        end = self.length + k.shape[2]
        if self.max_len is None:
            self._k = k if self._k is None else torch.cat((self._k, k), dim=2)
            self._v = v if self._v is None else torch.cat((self._v, v), dim=2)
        else:
            if end > self.max_len:
                raise ValueError(f"the cache holds {self.length} of max_len {self.max_len} positions; cannot append {k.shape[2]}")
            if self._k is None:
                # Stored (batch, max_len, heads_kv, head_dim): a row's first `length` positions are
                # one contiguous block, so reorder() copies each row in one piece (the kernels read
                # the (batch, heads_kv, length, head_dim) view through its strides, no copy).
                # Uninitialised: nothing past `length` is ever read, so zeroing it would only
                # cost a pass over the whole buffer.
                self._k = k.new_empty((k.shape[0], self.max_len) + k.shape[1:2] + k.shape[3:])
                self._v = v.new_empty((v.shape[0], self.max_len) + v.shape[1:2] + v.shape[3:])
            self._k[:, self.length:end] = k.transpose(1, 2)
            self._v[:, self.length:end] = v.transpose(1, 2)
        self.length = end
        return self.k, self.v

    def reorder(self, index):
        """Keep the batch rows ``index`` (a 1-D long tensor), in that order: beam search moves each
        beam's history to the beams that continue it, at every step."""
        if self._k is None:
            return
        if self.max_len is None or index.shape[0] != self._k.shape[0]:
            self._k, self._v = self._k.index_select(0, index), self._v.index_select(0, index)
            self._spare = None
            return
        # Preallocated: gather the stored positions only (not the empty tail) into a second pair of
        # buffers and swap, so a step allocates nothing (fresh pages cost more than the copy on a CPU).
        if self._spare is None:
            self._spare = (torch.empty_like(self._k), torch.empty_like(self._v))
        for old, new in zip((self._k, self._v), self._spare):
            torch.index_select(old[:, :self.length], 0, index, out=new[:, :self.length])
        self._spare, (self._k, self._v) = (self._k, self._v), self._spare
