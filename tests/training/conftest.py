"""Tiny corpora and models for the training tests; the cache goes to a temp dir."""

import os
import random

import pytest

DEFAULT_OPS = "llmkernels"  # the training tests run on the fused ops; test_model compares them with --ops torch

TINY_FLAGS = ["--tokenizer", "bytes", "--seq-len", "32", "--batch-size", "4", "--d-model", "32", "--n-layer", "2",
              "--n-head", "4", "--n-kv-head", "2", "--mlp-hidden", "64", "--eval-batches", "2", "--sample-tokens", "8",
              "--quiet"]


def make_corpus(folder, files=4, lines=60, seed=0):
    rng = random.Random(seed)
    words = ["def", "return", "self", "value", "class", "import", "for", "in", "if", "else", "print", "x", "y"]
    os.makedirs(folder, exist_ok=True)
    for i in range(files):
        with open(os.path.join(folder, f"mod{i}.py"), "w") as f:
            for _ in range(lines):
                f.write("    " * rng.randint(0, 2) + " ".join(rng.choice(words) for _ in range(rng.randint(2, 8))) + "\n")
    return str(folder)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMKERNELS_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path / "corpus")
