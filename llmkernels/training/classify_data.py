"""The classification data set: snippets of the Python standard library's sources, labelled with the
top-level package they come from (no download; the same on every machine with the same Python).

``load()`` returns a ``Dataset``: ``label_names`` and the ``train`` and ``test`` splits, each a
``Split`` of ``texts``, ``labels`` (indices into ``label_names``) and ``files`` (the source file of
each snippet). The split is by file: a file's snippets are all on one side, chosen by a hash of its
path, at least one file of each package on each side. A snippet is ``SNIPPET_LINES`` consecutive
lines (those with too little text are dropped); each package keeps at most ``max_per_package``
snippets a split (chosen by hash too), so no package swamps the others.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from llmkernels.training.data import stdlib_files

PACKAGES = ("asyncio", "email", "http", "importlib", "json", "multiprocessing", "unittest", "xml")
SNIPPET_LINES = 12
MIN_CHARS = 80  # a snippet of blank lines and a closing bracket says nothing about its package
TEST_FRACTION = 0.25
MAX_PER_PACKAGE = {"train": 400, "test": 80}


@dataclasses.dataclass
class Split:
    texts: list[str]
    labels: list[int]
    files: list[str]

    def __len__(self) -> int:
        return len(self.texts)


@dataclasses.dataclass
class Dataset:
    label_names: tuple[str, ...]
    train: Split
    test: Split

    def split(self, name: str) -> Split:
        if name not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test'; got {name!r}")
        return getattr(self, name)


def _rank(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def snippets(text: str, lines: int = SNIPPET_LINES) -> list[str]:
    """The text cut into blocks of ``lines`` lines, without those holding fewer than MIN_CHARS characters."""
    rows = text.splitlines()
    blocks = ("\n".join(rows[i:i + lines]).strip("\n") for i in range(0, len(rows), lines))
    return [b for b in blocks if len(b.strip()) >= MIN_CHARS]


def split_files(files: list[str]) -> tuple[list[str], list[str]]:
    """(train, test) files of one package: TEST_FRACTION of them (at least one) to the test side."""
    if len(files) < 2:
        raise ValueError(f"a package needs two files or more to be split by file; got {files}")
    ordered = sorted(files, key=_rank)
    cut = max(1, round(len(files) * TEST_FRACTION))
    return sorted(ordered[cut:]), sorted(ordered[:cut])


def load(packages: tuple[str, ...] = PACKAGES, lines: int = SNIPPET_LINES, max_per_package: dict | None = None) -> Dataset:
    """The labelled snippets of ``packages`` (top-level stdlib packages), split by file."""
    limits = {**MAX_PER_PACKAGE, **(max_per_package or {})}
    root, files = stdlib_files()
    by_package: dict[str, list[str]] = {p: [] for p in packages}
    for f in files:
        parts = f.relative_to(root).parts
        if len(parts) > 1 and parts[0] in by_package:
            by_package[parts[0]].append(f.relative_to(root).as_posix())
    splits = {"train": Split([], [], []), "test": Split([], [], [])}
    for label, package in enumerate(packages):
        if not by_package[package]:
            raise ValueError(f"package {package!r} has no sources in the standard library at {root}")
        for name, side in zip(("train", "test"), split_files(by_package[package])):
            found = [(path, i, s) for path in side
                     for i, s in enumerate(snippets(Path(root, path).read_text(encoding="utf-8", errors="replace"), lines))]
            kept = sorted(sorted(found, key=lambda t: _rank(f"{t[0]}:{t[1]}"))[:limits[name]])
            for path, _, text in kept:
                splits[name].texts.append(text)
                splits[name].labels.append(label)
                splits[name].files.append(path)
    return Dataset(tuple(packages), splits["train"], splits["test"])
