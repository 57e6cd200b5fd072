"""Corpus, cache and batches.

The default corpus is the Python standard library's own ``.py`` files (no download). Files are
split into train/validation by a hash of their relative path, so the split is the same on every
machine; when that leaves either side empty (a corpus of a file or two), the token stream is split
instead (the last ``val_fraction`` held out). The tokenizer and the token ids (flat ``uint16``/
``uint32`` arrays, memory-mapped) are cached under ``$LLMKERNELS_CACHE`` (default
``~/.cache/llmkernels``), keyed by the corpus content and the tokenizer, so a second run starts at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from llmkernels.training import tokenizer as tokenizers
from llmkernels.training.config import TrainingError

SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
FORMAT_VERSION = 1


def cache_root() -> Path:
    return Path(os.environ.get("LLMKERNELS_CACHE") or Path.home() / ".cache" / "llmkernels")


def stdlib_files() -> tuple[Path, list[Path]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [f for f in root.rglob("*.py") if not SKIP_DIRS & set(f.relative_to(root).parts[:-1])]
    return root, sorted(files)


def corpus_files(data: str | None) -> tuple[Path, list[Path]]:
    """(root, files) of the corpus: the stdlib, one text file, or every text file under a folder."""
    if data is None:
        return stdlib_files()
    path = Path(data)
    if not path.exists():
        raise TrainingError(f"data path {data!r} does not exist")
    if path.is_file():
        files, root = [path], path.parent
    else:
        root = path
        files = sorted(
            f for f in path.rglob("*")
            if f.is_file() and not any(p.startswith(".") or p == "__pycache__" for p in f.relative_to(path).parts)
        )
    if not files or all(f.stat().st_size == 0 for f in files):
        raise TrainingError(f"data path {data!r} holds no text")
    return root, files


def _read_texts(root: Path, files: list[Path]) -> tuple[list[str], list[str], str]:
    """(relative paths, texts, content hash) of the UTF-8 text files; others are skipped."""
    names, texts = [], []
    digest = hashlib.sha256(f"v{FORMAT_VERSION}".encode())
    for f in files:
        raw = f.read_bytes()
        if b"\0" in raw:
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if not text:
            continue
        name = f.relative_to(root).as_posix()
        digest.update(name.encode() + b"\0" + hashlib.sha256(raw).digest())
        names.append(name)
        texts.append(text)
    return names, texts, digest.hexdigest()[:16]


def _is_val(name: str, val_fraction: float) -> bool:
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 2**32 < val_fraction


@dataclass
class Corpus:
    train: np.ndarray
    val: np.ndarray
    tokenizer: object
    tokenizer_path: str
    key: str

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size


def _encode(tok, texts: list[str]) -> np.ndarray:
    ids = []
    for doc in tok.encode_batch(texts):
        ids.extend(doc)
        ids.append(tok.eot_id)
    dtype = np.uint16 if tok.vocab_size <= 65536 else np.uint32
    return np.asarray(ids, dtype=dtype)


@contextlib.contextmanager
def building(folder: Path):
    """A temporary folder beside the cache ``folder``, renamed to it when the block ends, so a cache
    folder holds all of its files or does not exist (a process that built it first wins)."""
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, folder)
        except OSError:  # another process built the same cache first
            if not (folder / "meta.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build(folder: Path, names, texts, tokenizer: str, vocab_size: int, val_fraction: float) -> None:
    val_mask = [_is_val(n, val_fraction) for n in names]
    train_texts = [t for t, v in zip(texts, val_mask) if not v]
    val_texts = [t for t, v in zip(texts, val_mask) if v]
    by_file = bool(train_texts and val_texts)
    if tokenizer == "bytes":
        tok = tokenizers.ByteTokenizer()
    else:
        tok = tokenizers.BPETokenizer.train(train_texts if by_file else texts, vocab_size)
    if by_file:
        train, val = _encode(tok, train_texts), _encode(tok, val_texts)
    else:
        ids = _encode(tok, texts)
        cut = len(ids) - max(1, int(len(ids) * val_fraction))
        train, val = ids[:cut], ids[cut:]
    with building(folder) as tmp:
        tok.save(str(tmp / "tokenizer.json"))
        train.tofile(tmp / "train.bin")
        val.tofile(tmp / "val.bin")
        meta = {"dtype": str(train.dtype), "train_tokens": len(train), "val_tokens": len(val),
                "files": len(names), "split": "by_file" if by_file else "by_stream", "vocab_size": tok.vocab_size}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))


def load_corpus(data: str | None, tokenizer: str = "bpe", vocab_size: int = 8192,
                val_fraction: float = 0.05, build: bool = True, mask_token: bool = False) -> Corpus:
    """The tokenised corpus, from the cache or built into it (``build=False``: the cache must hold it).

    ``mask_token``: the tokenizer gains a mask token (an encoder's), saved beside the plain one; the
    token ids and the key stay the plain corpus's, so a GPT and an encoder share one cache."""
    root, files = corpus_files(data)
    names, texts, content_key = _read_texts(root, files)
    if not texts:
        raise TrainingError(f"data path {data!r} holds no UTF-8 text")
    spec = "bytes" if tokenizer == "bytes" else f"bpe{vocab_size}"
    key = f"{content_key}-{spec}-val{val_fraction:g}"
    folder = cache_root() / "corpora" / key
    if not (folder / "meta.json").exists():
        if not build:
            raise TrainingError(f"tokenised corpus missing from the cache at {folder}")
        folder.parent.mkdir(parents=True, exist_ok=True)
        _build(folder, names, texts, tokenizer, vocab_size, val_fraction)
    meta = json.loads((folder / "meta.json").read_text())
    dtype = np.dtype(meta["dtype"])

    def mapped(name, count):
        return np.memmap(folder / name, dtype=dtype, mode="r", shape=(count,)) if count else np.zeros(0, dtype)

    tok_path = folder / "tokenizer.json"
    tok = tokenizers.load(str(tok_path))
    if mask_token:
        tok, tok_path = tokenizers.with_mask(tok), folder / "tokenizer-mask.json"
        if not tok_path.exists():
            tmp = tok_path.with_name(f".{tok_path.name}-{os.getpid()}")
            tok.save(str(tmp))
            os.replace(tmp, tok_path)  # whole or absent: another process may be writing the same file
    return Corpus(mapped("train.bin", meta["train_tokens"]), mapped("val.bin", meta["val_tokens"]),
                  tok, str(tok_path), key)


def check_sizes(corpus: Corpus, seq_len: int) -> None:
    for name, ids in (("training", corpus.train), ("validation", corpus.val)):
        if len(ids) < seq_len + 1:
            raise TrainingError(
                f"the corpus is too small: its {name} split has {len(ids)} tokens, fewer than one sequence "
                f"({seq_len} + 1); give more data or a smaller --seq-len"
            )


class Batches:
    """Random windows of the training stream, drawn from (seed, step) alone, so a resumed run sees the same data.

    Step ``s`` draws one global batch of ``grad_accum * world * batch`` windows; micro-step ``m``
    of rank ``r`` takes its slice, so N processes see exactly what one process with N times the
    batch would.
    """

    def __init__(self, ids: np.ndarray, seq_len: int, batch: int, grad_accum: int, seed: int,
                 world: int = 1, rank: int = 0):
        self.ids, self.seq_len, self.batch = ids, seq_len, batch
        self.grad_accum, self.seed, self.world, self.rank = grad_accum, seed, world, rank

    def _offsets(self, step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        count = self.grad_accum * self.world * self.batch
        return torch.randint(0, len(self.ids) - self.seq_len, (count,), generator=g).view(
            self.grad_accum, self.world, self.batch
        )

    def get(self, step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
        offsets = self._offsets(step)[micro, self.rank].tolist()
        rows = np.stack([np.asarray(self.ids[o:o + self.seq_len + 1], dtype=np.int64) for o in offsets])
        window = torch.from_numpy(rows)
        return window[:, :-1], window[:, 1:]


def val_windows(ids: np.ndarray, seq_len: int, count: int) -> torch.Tensor:
    """Up to ``count`` non-overlapping windows of seq_len + 1 tokens from the start of the validation stream."""
    n = min(count, (len(ids) - 1) // seq_len)
    rows = [np.asarray(ids[i * seq_len:i * seq_len + seq_len + 1], dtype=np.int64) for i in range(n)]
    return torch.from_numpy(np.stack(rows))
