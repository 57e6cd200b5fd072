"""The ``"llmkernels"`` attention implementation for transformers' ``AttentionInterface``.

transformers calls ``attention_forward(module, query, key, value, attention_mask, dropout=,
scaling=, is_causal=, sliding_window=, softcap=, ...)`` with q (B, Hq, Q, D) and k, v (B, Hkv, K, D)
and expects ``(out (B, Q, Hq, D), None)``. The mask it passes is what ``attention_mask`` (the mask
function registered beside it) built: ``None`` where the pattern is plainly causal or
bidirectional without padding (then the causal rule decides), else a (B, 1, Q, K) bool mask.

The kernel serves a mask exactly when it is the causal (bottom-right aligned, as a KV cache needs)
or bidirectional pattern, with the sliding window if any, and a key padding mask: that is checked
element by element (O(B Q K), no approximation). Everything else (any other mask, a float mask,
dropout while training, attention sinks, ``output_attentions``) runs transformers' own SDPA path,
or the plain softmax for softcapped scores SDPA cannot take, with one log line per reason.
"""

from __future__ import annotations

import logging

import torch

import llmkernels

IMPLEMENTATION = "llmkernels"
logger = logging.getLogger("llmkernels.integrations.transformers")
_logged: set[str] = set()


def _log_once(reason: str) -> None:
    if reason not in _logged:
        _logged.add(reason)
        logger.warning("llmkernels attention: %s; this call runs transformers' exact fallback path", reason)


def attention_mask(*args, **kwargs):
    """The mask function: transformers' SDPA mask, allowed to return ``None`` for a plain causal or
    bidirectional pattern without padding (the kernel needs no mask tensor then)."""
    from transformers.masking_utils import sdpa_mask

    kwargs["allow_is_bidirectional_skip"] = True
    return sdpa_mask(*args, **kwargs)


def _is_causal(module, query, is_causal) -> bool:
    """transformers' rule: the ``is_causal`` argument, then the module's, and a single query never."""
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    return bool(causal) and query.shape[2] > 1


def _pattern(q_len: int, k_len: int, causal: bool, sliding_window, device) -> torch.Tensor:
    """(Q, K) bool: which key each query sees without padding, bottom-right aligned."""
    rows = torch.arange(q_len, device=device)[:, None] + (k_len - q_len)
    cols = torch.arange(k_len, device=device)[None, :]
    seen = cols <= rows if causal else torch.ones(q_len, k_len, dtype=torch.bool, device=device)
    if sliding_window:
        seen = seen & (rows - cols < sliding_window)
        if not causal:
            seen = seen & (cols - rows < sliding_window)
    return seen


def _key_padding(mask: torch.Tensor, causal: bool, sliding_window) -> torch.Tensor | None:
    """The (B, K) key padding mask that makes ``mask`` the plain pattern, or None when none does."""
    if mask.dtype != torch.bool or mask.dim() != 4 or mask.shape[1] != 1:
        return None
    batch, _, q_len, k_len = mask.shape
    keys = mask.any(dim=2)[:, 0]  # (B, K): the keys some query sees
    expected = _pattern(q_len, k_len, causal, sliding_window, mask.device)[None, None] & keys[:, None, None, :]
    return keys if torch.equal(expected.expand_as(mask), mask) else None


def _window(sliding_window, causal: bool) -> tuple[int, int]:
    if not sliding_window:
        return (-1, -1)
    return (sliding_window - 1, 0 if causal else sliding_window - 1)


def _softmax_fallback(query, key, value, attention_mask, dropout, scaling, softcap, training):
    """Exact attention with an arbitrary mask and softcapped scores (SDPA takes no softcap)."""
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * scaling
    scores = softcap * torch.tanh(scores / softcap)
    if attention_mask is not None:
        scores = scores.masked_fill(~attention_mask, float("-inf")) if attention_mask.dtype == torch.bool else scores + attention_mask
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0).to(value.dtype)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous()


def _fallback(reason, module, query, key, value, attention_mask, dropout, scaling, is_causal, softcap, kwargs):
    _log_once(reason)
    if softcap is not None:
        return _softmax_fallback(query, key, value, attention_mask, dropout, scaling, softcap, module.training), None
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = query.shape[1] // key.shape[1]
    if groups > 1 and getattr(module, "num_key_value_groups", None) != groups:  # SDPA's path repeats by that attribute
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                  is_causal=is_causal, **kwargs)


def attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                      is_causal=None, sliding_window=None, softcap=None, **kwargs):
    """transformers' attention-function signature on ``llmkernels.attention``; returns (out, None)."""
    if scaling is None:
        scaling = getattr(module, "scaling", None) or query.shape[-1] ** -0.5
    reason = None
    if dropout and module.training:
        reason = "dropout while training"
    elif getattr(module, "sinks", None) is not None:
        reason = "attention sinks"
    elif kwargs.get("output_attentions"):
        reason = "output_attentions=True (no weights are formed)"
    elif query.shape[-1] != value.shape[-1] or key.shape[-1] != query.shape[-1]:
        reason = "value head size unlike the query's"
    elif query.shape[1] % key.shape[1]:
        reason = "query heads not a multiple of key/value heads"
    if reason is not None:
        return _fallback(reason, module, query, key, value, attention_mask, dropout, scaling, is_causal, softcap, kwargs)

    causal = _is_causal(module, query, is_causal)
    padding = None
    if attention_mask is not None:
        for candidate in (causal, not causal) if query.shape[2] > 1 else (False,):
            padding = _key_padding(attention_mask, candidate, sliding_window)
            if padding is not None:
                causal = candidate
                break
        if padding is None:
            reason = "a mask that is not causal/bidirectional with key padding" if attention_mask.dtype == torch.bool \
                else "an additive float mask"
            return _fallback(reason, module, query, key, value, attention_mask, dropout, scaling, is_causal, softcap, kwargs)
        if bool(padding.all()):
            padding = None
    elif causal and key.shape[2] > query.shape[2]:
        # No mask with more keys than queries: transformers' prefill into an empty preallocated
        # cache, whose tail holds no token yet; SDPA's is_causal aligns top-left there, so keep
        # the first Q keys as transformers does.
        key, value = key[:, :, : query.shape[2]], value[:, :, : query.shape[2]]
    out = llmkernels.attention(query, key, value, causal=causal, scale=float(scaling), window=_window(sliding_window, causal),
                               softcap=softcap, key_padding_mask=padding)
    return out.transpose(1, 2).contiguous(), None


def register() -> None:
    """Registers the implementation and its mask function with transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(IMPLEMENTATION, attention_forward)
    AttentionMaskInterface.register(IMPLEMENTATION, attention_mask)
