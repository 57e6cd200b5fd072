"""Parallel text for the translation case: number words from ``num2words``, or a user's TSV.

Numbers 0..999,999 are split into train, validation and test by a hash of the number (never by
range): the test numbers are never seen in training and every range is covered. Training draws
from a pool of ``train_pool`` training-side numbers, so that writing the words out stays within
seconds: every one below ``SHORT`` (rare in a uniform draw, 1%, yet what a user types first: a
model trained on a uniform sample translated "seven hundred and twelve" as "siebenhundertzwölftausend"),
then the ones of smallest hash (a uniform sample). Even so the numbers of one or two digits are a
sliver of the pool (100 of 100,000: each drawn about twice in a default run, and "zero"/"null" or
"twelve"/"zwölf" alone occur nowhere else), so the pool repeats the numbers of every digit count
that holds fewer than ``MIN_DIGITS_SHARE`` of it up to that share (``repeats``). A TSV (``source<TAB>target`` per line) is split
the same way by a hash of its source sentence. A byte-level BPE (``training.tokenizer``, with a prefix space so that a word alone is the
same tokens as inside a sentence; its end-of-text id starting, ending and padding every target) is trained on the training side only,
one shared by both languages or one per side. Everything is cached under ``$LLMKERNELS_CACHE`` as
the GPT's corpus is, keyed by what it was built from.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from llmkernels.training import tokenizer as tokenizers
from llmkernels.training.config import TrainingError
from llmkernels.training.data import building, cache_root

FORMAT_VERSION = 3  # 2: the training pool starts with the numbers below SHORT; 3: repeats, prefix space
NUMBERS = 1_000_000
SHORT = 10_000
MIN_DIGITS_SHARE = 0.02  # of the training draws, at least, for the numbers of each digit count
FRACTIONS = {"numbers": {"test": 0.005, "val": 0.005}, "tsv": {"test": 0.05, "val": 0.05}}
SPLITS = ("train", "val", "test")
PAD = -1  # in the cached arrays; batches turn it into masks and ignored targets


def languages() -> list[str]:
    from num2words import CONVERTER_CLASSES

    return sorted(CONVERTER_CLASSES)


def parse_pair(pair: str) -> tuple[str, str]:
    """``"en-de"`` -> ("en", "de"), both languages num2words writes (one line naming them otherwise)."""
    offered = languages()
    parts = pair.split("-") if isinstance(pair, str) else []
    if len(parts) != 2 or parts[0] == parts[1] or not all(p in offered for p in parts):
        raise TrainingError(f"unknown language pair {pair!r}: give SRC-TGT, two different languages num2words offers: "
                            f"{', '.join(offered)}")
    return parts[0], parts[1]


def _hash01(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16) / 16 ** 12


def split_of(key: str, fractions: dict) -> str:
    """Which side a number (its decimal string) or a TSV source sentence falls on."""
    h = _hash01(key)
    if h < fractions["test"]:
        return "test"
    return "val" if h < fractions["test"] + fractions["val"] else "train"


def number_split(train_pool: int) -> dict[str, list[int]]:
    """The numbers of each side: every test and validation number, and ``train_pool`` training
    numbers: those below ``SHORT`` first, then those of smallest hash."""
    fractions = FRACTIONS["numbers"]
    sides = {name: [] for name in SPLITS}
    for n in range(NUMBERS):
        sides[split_of(str(n), fractions)].append(n)
    train = sorted(sides["train"], key=lambda n: (n >= SHORT, _hash01(f"pool{n}")))[:train_pool]
    sides["train"] = sorted(train)
    return sides


def repeats(train: list[int]) -> dict[int, int]:
    """How many times each digit count's numbers stand in the training pool: once, or as many times
    as lifts that digit count to ``MIN_DIGITS_SHARE`` of the pool (the numbers of one digit ~200
    times in the default pool, of two ~20, of three ~2). Only the draws change, never the split."""
    counts: dict[int, int] = {}
    for n in train:
        counts[len(str(n))] = counts.get(len(str(n)), 0) + 1
    return {d: max(1, math.ceil(MIN_DIGITS_SHARE * len(train) / c)) for d, c in counts.items()}


def number_pairs(pair: str, train_pool: int) -> dict[str, list[tuple[str, str]]]:
    """The text pairs of each side; the training side with the repeats of ``repeats``."""
    from num2words import num2words

    src, tgt = parse_pair(pair)
    sides = number_split(train_pool)
    times = repeats(sides["train"])
    return {side: [(num2words(n, lang=src), num2words(n, lang=tgt))
                   for n in numbers for _ in range(times[len(str(n))] if side == "train" else 1)]
            for side, numbers in sides.items()}


def tsv_pairs(path: str) -> dict[str, list[tuple[str, str]]]:
    if not Path(path).is_file():
        raise TrainingError(f"--data {path!r} is not a file (a TSV of source<TAB>target lines)")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise TrainingError(f"cannot read --data {path!r}: {e}") from None
    sides = {name: [] for name in SPLITS}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
            raise TrainingError(f"--data {path!r} line {number} is not 'source<TAB>target'")
        source, target = fields[0].strip(), fields[1].strip()
        sides[split_of(source, FRACTIONS["tsv"])].append((source, target))
    empty = [name for name in SPLITS if not sides[name]]
    if empty:
        raise TrainingError(f"--data {path!r} holds too few pairs: its {', '.join(empty)} split(s) came out empty "
                            f"(each takes about {FRACTIONS['tsv']['test']:.0%} of the lines)")
    return sides


@dataclass
class TranslationData:
    """The cached, tokenised pairs: per split ``(src, tgt)`` int32 arrays padded with ``PAD``, and the texts."""

    key: str
    folder: Path
    src_tokenizer: object
    tgt_tokenizer: object
    arrays: dict
    texts: dict  # split -> [(source, target)] for val and test

    @property
    def shared(self) -> bool:
        return (self.folder / "tokenizer.json").exists()

    # What the training loop reads from a corpus.
    @property
    def tokenizer(self):
        return self.tgt_tokenizer

    @property
    def tokenizer_path(self) -> str:
        return str(self.folder / ("tokenizer.json" if self.shared else "tgt_tokenizer.json"))

    @property
    def run_files(self) -> dict[str, str]:
        names = ["tokenizer.json"] if self.shared else ["src_tokenizer.json", "tgt_tokenizer.json"]
        return {name: str(self.folder / name) for name in names}

    @property
    def vocab_size(self) -> int:
        return self.tgt_tokenizer.vocab_size

    @property
    def train(self):
        return self.arrays["train"]

    @property
    def val(self):
        return self.arrays["val"]

    def max_len(self, side: int) -> int:
        return max(int((a[side] != PAD).sum(axis=1).max()) for a in self.arrays.values())


def load_tokenizers(folder: str | Path):
    """(source, target) tokenizers of a data cache or a run dir: one shared file, or one per side."""
    folder = Path(folder)
    if (folder / "tokenizer.json").exists():
        tok = tokenizers.load(str(folder / "tokenizer.json"))
        return tok, tok
    return tokenizers.load(str(folder / "src_tokenizer.json")), tokenizers.load(str(folder / "tgt_tokenizer.json"))


def _pad(rows: list[list[int]]) -> np.ndarray:
    out = np.full((len(rows), max(map(len, rows))), PAD, dtype=np.int32)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def _build(folder: Path, pairs: dict, vocab_size: int, shared: bool, tokenizers_from: str | None) -> None:
    with building(folder) as tmp:
        train = pairs["train"]
        if tokenizers_from is not None:
            for name in ("tokenizer.json", "src_tokenizer.json", "tgt_tokenizer.json"):
                if (Path(tokenizers_from) / name).exists():
                    shutil.copyfile(Path(tokenizers_from) / name, tmp / name)
            src_tok, tgt_tok = load_tokenizers(tmp)
        elif shared:
            src_tok = tgt_tok = tokenizers.BPETokenizer.train([t for pair in train for t in pair], vocab_size, True)
            src_tok.save(str(tmp / "tokenizer.json"))
        else:
            src_tok = tokenizers.BPETokenizer.train([s for s, _ in train], vocab_size, True)
            tgt_tok = tokenizers.BPETokenizer.train([t for _, t in train], vocab_size, True)
            src_tok.save(str(tmp / "src_tokenizer.json"))
            tgt_tok.save(str(tmp / "tgt_tokenizer.json"))
        for side, rows in pairs.items():
            src = _pad(src_tok.encode_batch([s for s, _ in rows]))
            tgt = _pad(tgt_tok.encode_batch([t for _, t in rows]))
            np.savez(tmp / f"{side}.npz", src=src, tgt=tgt)
        texts = {side: pairs[side] for side in ("val", "test")}
        (tmp / "texts.json").write_text(json.dumps(texts, ensure_ascii=False))
        (tmp / "meta.json").write_text(json.dumps({side: len(rows) for side, rows in pairs.items()}))


def _file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def load(pair: str, data: str | None = None, vocab_size: int = 400, shared: bool = True, train_pool: int = 100_000,
         tokenizers_from: str | None = None, build: bool = True) -> TranslationData:
    """The pairs of ``pair`` (or of the TSV ``data``), tokenised, from the cache or built into it.
    ``tokenizers_from``: a run dir whose tokenizers to reuse (fine-tuning) instead of training new ones."""
    if data is None:
        parse_pair(pair)
        source = f"numbers-{pair}-pool{train_pool}"
    else:
        if not Path(data).is_file():
            raise TrainingError(f"--data {data!r} is not a file (a TSV of source<TAB>target lines)")
        source = f"tsv-{_file_digest(data)}"
    if tokenizers_from is not None:
        tok_files = sorted(p for p in Path(tokenizers_from).glob("*tokenizer.json"))
        spec = "tok-" + hashlib.sha256(b"".join(p.read_bytes() for p in tok_files)).hexdigest()[:16]
    else:
        spec = f"bpe{vocab_size}-{'shared' if shared else 'separate'}"
    key = f"v{FORMAT_VERSION}-{source}-{spec}"
    folder = cache_root() / "translate" / key
    if not (folder / "meta.json").exists():
        if not build:
            raise TrainingError(f"tokenised pairs missing from the cache at {folder}")
        folder.parent.mkdir(parents=True, exist_ok=True)
        pairs = number_pairs(pair, train_pool) if data is None else tsv_pairs(data)
        _build(folder, pairs, vocab_size, shared, tokenizers_from)
    arrays = {}
    for side in SPLITS:
        with np.load(folder / f"{side}.npz") as npz:
            arrays[side] = (npz["src"], npz["tgt"])
    src_tok, tgt_tok = load_tokenizers(folder)
    texts = {side: [tuple(p) for p in rows] for side, rows in json.loads((folder / "texts.json").read_text()).items()}
    return TranslationData(key, folder, src_tok, tgt_tok, arrays, texts)


def batch_tensors(src: np.ndarray, tgt: np.ndarray, eot: int):
    """(src, src_mask, tgt_in, tgt_out) of padded rows, cut to the longest row: the target shifted
    right behind the start token (end-of-text), and ending with it; padding ignored (-100) in tgt_out."""
    src_len = max(1, int((src != PAD).sum(axis=1).max()))
    tgt_len = int((tgt != PAD).sum(axis=1).max())
    src_t = torch.from_numpy(src[:, :src_len].astype(np.int64))
    src_mask = src_t != PAD
    tgt_t = torch.from_numpy(tgt[:, :tgt_len].astype(np.int64))
    lengths = (tgt_t != PAD).sum(dim=1)
    body = tgt_t.masked_fill(tgt_t == PAD, eot)
    tgt_in = torch.cat((torch.full((len(tgt_t), 1), eot), body), dim=1)
    tgt_out = torch.cat((body, torch.full((len(tgt_t), 1), eot)), dim=1)
    positions = torch.arange(tgt_len + 1)[None, :]
    tgt_out = tgt_out.masked_fill(positions > lengths[:, None], -100)
    return src_t.masked_fill(~src_mask, eot), src_mask, tgt_in, tgt_out


class PairBatches:
    """Random training pairs drawn from (seed, step) alone, sliced per micro-step and rank as
    ``data.Batches`` does, so a resumed run sees the same data."""

    def __init__(self, arrays, eot: int, batch: int, grad_accum: int, seed: int, world: int = 1, rank: int = 0):
        self.src, self.tgt = arrays
        self.eot, self.batch, self.grad_accum, self.seed, self.world, self.rank = eot, batch, grad_accum, seed, world, rank
        mean_target = float((self.tgt != PAD).sum(axis=1).mean()) + 1
        self.tokens_per_step = int(mean_target * batch * grad_accum * world)  # target tokens, for tokens/s

    def get(self, step: int, micro: int):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        index = torch.randint(0, len(self.src), (self.grad_accum, self.world, self.batch), generator=g)
        rows = index[micro, self.rank].numpy()
        return batch_tensors(self.src[rows], self.tgt[rows], self.eot)
