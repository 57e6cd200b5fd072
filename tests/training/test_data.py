import numpy as np
import pytest
import torch

from llmkernels.training import data, tokenizer
from llmkernels.training.config import TrainingError
from tests.training.conftest import make_corpus


def test_stdlib_corpus_excludes_tests_and_site_packages():
    root, files = data.stdlib_files()
    assert len(files) > 100
    parts = {p for f in files for p in f.relative_to(root).parts[:-1]}
    assert not parts & {"site-packages", "test", "tests", "__pycache__"}
    assert all(f.suffix == ".py" for f in files)


def test_split_by_file_is_deterministic_and_cached(tmp_path, monkeypatch):
    folder = make_corpus(tmp_path / "c", files=40, lines=5)
    first = data.load_corpus(folder, "bytes", val_fraction=0.2)
    assert len(first.val) > 0 and len(first.train) > 0
    monkeypatch.setattr(data, "_build", lambda *a, **k: pytest.fail("rebuilt a cached corpus"))
    second = data.load_corpus(folder, "bytes", val_fraction=0.2)
    assert np.array_equal(first.train, second.train) and np.array_equal(first.val, second.val)
    assert first.key == second.key
    # The split depends on the path alone: which files are held out is a pure function of the name.
    names = [f"mod{i}.py" for i in range(40)]
    held = [n for n in names if data._is_val(n, 0.2)]
    assert 0 < len(held) < 40
    text = b"".join((tmp_path / "c" / n).read_bytes() + b"" for n in held)
    assert len(first.val) == len(text) + len(held)  # bytes + one end-of-text per file


def test_changed_content_gets_a_new_cache_key(tmp_path):
    folder = make_corpus(tmp_path / "c", files=3)
    key = data.load_corpus(folder, "bytes").key
    (tmp_path / "c" / "mod0.py").write_text("changed\n" * 50)
    assert data.load_corpus(folder, "bytes").key != key


def test_bpe_tokenizer_trains_small_vocab_and_round_trips(tmp_path):
    folder = make_corpus(tmp_path / "c", files=3)
    corpus = data.load_corpus(folder, "bpe", vocab_size=300)
    assert 257 < corpus.vocab_size <= 300
    text = "def value(self):\n    return x  # ünïcode\n"
    assert corpus.tokenizer.decode(corpus.tokenizer.encode(text)) == text
    again = tokenizer.load(corpus.tokenizer_path)
    assert again.encode(text) == corpus.tokenizer.encode(text)
    assert corpus.train.dtype == np.uint16 and int(corpus.train.max()) < corpus.vocab_size


def test_single_file_splits_the_stream(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("hello world\n" * 200)
    corpus = data.load_corpus(str(path), "bytes", val_fraction=0.1)
    total = len(corpus.train) + len(corpus.val)
    assert total == 2401 and len(corpus.val) == 240


@pytest.mark.parametrize("make, message", [
    (lambda p: str(p / "nope"), "does not exist"),
    (lambda p: (p / "empty").mkdir() or str(p / "empty"), "holds no text"),
])
def test_bad_paths(tmp_path, make, message):
    with pytest.raises(TrainingError, match=message):
        data.load_corpus(make(tmp_path), "bytes")


def test_batches_depend_on_seed_and_step_and_split_across_ranks(tmp_path):
    ids = np.arange(10_000, dtype=np.uint16)
    one = data.Batches(ids, 16, batch=4, grad_accum=1, seed=5, world=1)
    x, y = one.get(7, 0)
    assert torch.equal(x, one.get(7, 0)[0]) and not torch.equal(x, one.get(8, 0)[0])
    assert torch.equal(x[:, 1:], y[:, :-1])
    # Two ranks with half the batch see exactly the single process's windows, split in two.
    halves = [data.Batches(ids, 16, batch=2, grad_accum=1, seed=5, world=2, rank=r).get(7, 0)[0] for r in (0, 1)]
    assert torch.equal(torch.cat(halves), x)
    # Accumulation splits the same way.
    micro = [data.Batches(ids, 16, batch=2, grad_accum=2, seed=5).get(7, m)[0] for m in (0, 1)]
    assert torch.equal(torch.cat(micro), x)
