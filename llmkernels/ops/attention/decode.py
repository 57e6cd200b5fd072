"""Decoding (one query per head against a cache) with grouped-query attention, as one problem of
``group`` queries per key/value head.

A kernel tiles queries in blocks of 16 lanes and reads a key/value head once per query block: with
one query per head, 15 of 16 lanes idle and each key/value head is read once per query head that
shares it. Seen as (B, Hkv, group, D), the group's query heads fill the lanes of one block and the
cache is read once. This is exact when every packed row sees the same keys with the same scores:
a lone query sits at the last position, so causal masking hides nothing, and there is no sliding
window or per-head ALiBi slope; other cases keep the plain layout.
"""

from __future__ import annotations

from typing import Optional

from torch import Tensor


def packs_single_queries(q: Tensor, k: Tensor, window_left: int, window_right: int,
                         alibi_slopes: Optional[Tensor]) -> bool:
    return (q.shape[2] == 1 and q.shape[1] > k.shape[1] and window_left < 0 and window_right < 0
            and alibi_slopes is None)


def grouped(t: Tensor, heads_kv: int) -> Tensor:
    """(B, Hq, 1, D) with any strides as (B, Hkv, group, D): head h = hk * group + g."""
    B, Hq, _, D = t.shape
    group = Hq // heads_kv
    sb, sh, _, sd = t.stride()
    return t.as_strided((B, heads_kv, group, D), (sb, group * sh, sh, sd), t.storage_offset())
