"""Tokenizers: byte-level BPE trained locally with Hugging Face `tokenizers`, or raw bytes.

Both end each document with an end-of-text id and save to / load from one JSON file. An encoder's
tokenizer also has a mask token (``with_mask``): one more special id, after every id the corpus
was encoded with, so the tokenised corpus is shared with the GPT's.
"""

from __future__ import annotations

import json
from typing import Iterable

EOT = "<|endoftext|>"
MASK = "<|mask|>"


class ByteTokenizer:
    """One id per UTF-8 byte (0..255), plus 256 for end-of-text (and 257 for the mask, ``mask=True``)."""

    kind = "bytes"
    eot_id = 256

    def __init__(self, mask: bool = False):
        self.mask_id = 257 if mask else None
        self.vocab_size = 258 if mask else 257

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"llmkernels_tokenizer": "bytes", **({"mask": True} if self.mask_id else {})}, f)


class BPETokenizer:
    """Byte-level BPE (GPT-2 style pre-tokenisation), so any text round-trips."""

    kind = "bpe"

    def __init__(self, tokenizer):
        self._tok = tokenizer
        # Saved in the tokenizer's JSON: a space put before the text, which decode takes off again.
        self.prefix_space = bool(getattr(tokenizer.pre_tokenizer, "add_prefix_space", False))
        self.eot_id = tokenizer.token_to_id(EOT)
        self.mask_id = tokenizer.token_to_id(MASK)  # None unless with_mask added it
        self.vocab_size = tokenizer.get_vocab_size()

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, prefix_space: bool = False) -> "BPETokenizer":
        """``prefix_space``: a word is the same tokens first in a text as after a space (short texts,
        such as a sentence of one word, then reuse the tokens of the longer ones)."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix_space)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[EOT],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts)]

    def decode(self, ids: Iterable[int]) -> str:
        text = self._tok.decode([i for i in ids if i != self.eot_id])
        return text[1:] if self.prefix_space and text.startswith(" ") else text

    def save(self, path: str) -> None:
        self._tok.save(path)


def with_mask(tok):
    """``tok`` with a mask token (a no-op if it has one): its id is ``vocab_size`` before the call."""
    if tok.mask_id is not None:
        return tok
    if tok.kind == "bytes":
        return ByteTokenizer(mask=True)
    from tokenizers import Tokenizer

    inner = Tokenizer.from_str(tok._tok.to_str())
    inner.add_special_tokens([MASK])
    return BPETokenizer(inner)


def load(path: str):
    with open(path, encoding="utf-8") as f:
        payload = json.load(f)
    if payload.get("llmkernels_tokenizer") == "bytes":
        return ByteTokenizer(mask=bool(payload.get("mask")))
    from tokenizers import Tokenizer

    return BPETokenizer(Tokenizer.from_str(json.dumps(payload)))
