"""The distillation driver: a tiny teacher distilled online and from a top-K cache beats the same
student from scratch on a fixed seed; resume is exact; bad input is one line before any work."""

import json
import os
import shutil

import numpy as np
import pytest

from llmkernels import cli
from llmkernels.training import distill
from tests.training.conftest import make_corpus

MODEL = ["--tokenizer", "bytes", "--seq-len", "32", "--batch-size", "8", "--eval-batches", "4", "--sample-tokens", "8",
         "--quiet"]
STUDENT = [*MODEL[4:], "--steps", "60", "--eval-every", "60"]  # the student shares the teacher's data and tokenizer


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher")
    with pytest.MonkeyPatch.context() as patch:  # module scope: the per-test cache fixture is not there yet
        patch.setenv("LLMKERNELS_CACHE", str(root / "cache"))
        corpus = make_corpus(root / "corpus", files=6, lines=120)
        run = root / "run"
        assert cli.main(["train", "--data", corpus, *MODEL, "--steps", "150", "--eval-every", "150", "--d-model", "64",
                         "--n-layer", "4", "--n-head", "4", "--n-kv-head", "2", "--mlp-hidden", "128", "--out", str(run)]) == 0
    return {"run": str(run), "cache": str(root / "cache")}


@pytest.fixture
def cache_of(teacher, monkeypatch):
    monkeypatch.setenv("LLMKERNELS_CACHE", teacher["cache"])  # the teacher's tokenized corpus, shared


def _report(out):
    return json.loads((out / "report.json").read_text())


def test_online_and_offline_students_beat_scratch(teacher, cache_of, tmp_path, monkeypatch):
    online = tmp_path / "online"
    assert cli.main(["distill", "--teacher", teacher["run"], *STUDENT, "--out", str(online)]) == 0
    report = _report(online)
    assert report["options"]["temperature"] == distill.DEFAULTS["temperature"]
    assert report["student"]["preset"] == "nano"  # the preset below the teacher's (tiny)
    assert report["student_kd"]["params"] == report["student_scratch"]["params"] < report["teacher"]["params"]
    assert report["student_kd"]["val_perplexity"] < report["student_scratch"]["val_perplexity"], report
    assert (online / "report.png").stat().st_size > 0

    # Offline: the teacher runs only to fill the cache; the student's steps never take the online
    # path (the teacher's forward and the full linear distillation loss).
    offline = tmp_path / "offline"
    offline.mkdir()
    os.rename(online / distill.SCRATCH, offline / distill.SCRATCH)  # a finished scratch run is reused
    calls = []
    monkeypatch.setattr(distill.LinearDistillationLoss, "forward", lambda *a, **k: calls.append(1))
    assert cli.main(["distill", "--teacher", teacher["run"], *STUDENT, "--offline-topk", "32", "--out", str(offline)]) == 0
    assert calls == []
    offline_report = _report(offline)
    assert offline_report["student_kd"]["val_perplexity"] < offline_report["student_scratch"]["val_perplexity"]
    assert offline_report["student_kd"]["val_perplexity"] <= 1.05 * report["student_kd"]["val_perplexity"]

    # A cache made for another run (here: another temperature) is refused, and left as it was.
    before = (offline / "topk-cache" / "meta.json").read_text()
    assert cli.main(["distill", "--teacher", teacher["run"], *STUDENT, "--offline-topk", "32", "--temperature", "2",
                     "--out", str(offline)]) == 2
    assert (offline / "topk-cache" / "meta.json").read_text() == before


def test_resume_is_exact(teacher, cache_of, tmp_path):
    flags = ["distill", "--teacher", teacher["run"], *MODEL[4:], "--steps", "12", "--eval-every", "6", "--log-every", "1"]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert cli.main([*flags, "--out", str(whole)]) == 0
    assert cli.main([*flags, "--out", str(resumed), "--stop-at", "5"]) == 0
    assert not (resumed / "report.json").exists()
    assert cli.main([*flags, "--out", str(resumed), "--resume"]) == 0
    for run in (distill.KD, distill.SCRATCH):
        losses = [[(r["step"], r["train_loss"], r.get("val_loss")) for r in map(json.loads, open(d / run / "metrics.jsonl"))]
                  for d in (whole, resumed)]
        assert losses[0] == losses[1] and len(losses[0]) == 12
    assert _report(whole)["student_kd"]["val_loss"] == _report(resumed)["student_kd"]["val_loss"]


def _one_line(capsys, match):
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("flags,match", [
    (["--teacher", "/nonexistent/run"], "does not exist"),
    (["--temperature", "0"], "--temperature must be a finite number > 0"),
    (["--temperature", "-1"], "--temperature must be a finite number > 0"),
    (["--temperature", "nan"], "--temperature must be a finite number > 0"),
    (["--tokenizer", "bpe"], "differs from the teacher's"),
    (["--vocab-size", "300"], "--vocab-size 300 differs from the teacher's"),
    (["--seq-len", "16"], "--seq-len 16 differs from the teacher's"),
    (["--offline-topk", "0"], "--offline-topk must be a positive integer"),
    (["--offline-topk", "100000"], "--offline-topk 100000 exceeds the teacher's vocabulary"),
    (["--offline-topk", "4", "--beta", "0.5"], "--beta must be 0"),
    (["--offline-exact", "2"], "--offline-exact needs --offline-topk"),
    (["--offline-topk", "4", "--offline-exact", "5"], "--offline-exact must be an integer in [0, K=4]"),
    (["--offline-topk", "4", "--offline-exact", "-1"], "--offline-exact must be an integer in [0, K=4]"),
])
def test_bad_input_is_one_line_before_any_work(teacher, cache_of, tmp_path, capsys, flags, match):
    out = tmp_path / "out"
    args = ["distill", "--teacher", teacher["run"], *STUDENT, "--out", str(out), *flags]
    assert cli.main(args) == 2
    _one_line(capsys, match)
    assert not out.exists()


def test_a_directory_without_a_run_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["distill", "--teacher", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    _one_line(capsys, "holds no run")
    assert not (tmp_path / "out").exists()


def test_a_teacher_on_another_corpus_or_tokenizer_is_refused(teacher, cache_of, tmp_path, capsys):
    """The teacher's run records the key of the tokenized corpus it read (data, tokenizer, vocabulary):
    one that the student's would not reproduce (here: the record altered) is refused."""
    run = tmp_path / "teacher"
    shutil.copytree(teacher["run"], run)
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**saved, "corpus_key": "another-corpus"}))
    assert cli.main(["distill", "--teacher", str(run), *STUDENT, "--out", str(tmp_path / "out")]) == 2
    _one_line(capsys, "the teacher's data or tokenizer differs")
    assert not (tmp_path / "out").exists()


def _damage_meta(cache):
    meta = json.loads((cache / "meta.json").read_text())
    (cache / "meta.json").write_text(json.dumps({**meta, "teacher_identity": "0" * 16}))


def _first_format(cache):
    """A cache of the plain top K (format 1, before the sampled rest): its meta.json had no format."""
    meta = json.loads((cache / "meta.json").read_text())
    (cache / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k not in ("format", "exact")}))


@pytest.mark.parametrize("damage,match", [
    (_damage_meta, "was made for another run (differs in teacher_identity)"),  # stale: another teacher checkpoint
    (_first_format, "is of format 1, this llmkernels reads format 2"),  # stale: the plain top-K of before
    (lambda cache: (cache / "ids.npy").write_bytes(b"\x93NUMPY"), "is damaged"),
    (lambda cache: (cache / "meta.json").write_text("{"), "is damaged"),
    (lambda cache: (cache / "meta.json").unlink(), "holds no top-K cache"),
], ids=["stale", "format-1", "ids-truncated", "meta-unreadable", "meta-missing"])
def test_a_stale_or_damaged_topk_cache_is_refused_and_kept(teacher, cache_of, tmp_path, capsys, damage, match):
    flags = ["distill", "--teacher", teacher["run"], *MODEL[4:], "--steps", "2", "--offline-topk", "4"]
    made = tmp_path / "made"  # the cache those flags make (only its meta.json damaged would differ from theirs)
    distill.prepare(distill.DistillOptions(teacher["run"], offline_topk=4),
                    {"seq_len": 32, "batch_size": 8, "steps": 2}, str(made), quiet=True)
    out = tmp_path / "out"
    out.mkdir()
    shutil.copytree(made / "topk-cache", out / "topk-cache")
    damage(out / "topk-cache")
    before = {p.name: p.read_bytes() for p in (out / "topk-cache").iterdir()}
    capsys.readouterr()
    assert cli.main([*flags, "--out", str(out)]) == 2
    _one_line(capsys, match)
    assert {p.name: p.read_bytes() for p in (out / "topk-cache").iterdir()} == before
    assert sorted(p.name for p in out.iterdir()) == ["topk-cache"]  # no student trained


def test_the_topk_cache_is_reproducible_and_sums_to_one(teacher, cache_of, tmp_path):
    """Two builds for the same run store the same rows (the sample is seeded by the run's seed and
    the batch's position); another seed reads other batches and samples anew. Each row: K distinct
    ids whose probabilities sum to 1 (the rest sampled, not lumped into a tail)."""
    def build(out, seed):
        distill.prepare(distill.DistillOptions(teacher["run"], offline_topk=8),
                        {"seq_len": 32, "batch_size": 4, "steps": 3, "seed": seed}, str(tmp_path / out), quiet=True)
        return {name: np.load(tmp_path / out / "topk-cache" / name) for name in ("ids.npy", "logprobs.npy")}

    first, again, other = build("a", 0), build("b", 0), build("c", 1)
    assert all(np.array_equal(first[name], again[name]) for name in first)
    assert not np.array_equal(first["ids.npy"], other["ids.npy"])
    ids, probs = first["ids.npy"].reshape(-1, 8), np.exp(first["logprobs.npy"].reshape(-1, 8).astype(np.float64))
    assert all(len(set(row)) == 8 for row in ids.tolist())
    assert np.allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_offline_exact_k_stores_the_plain_top_k(teacher, cache_of, tmp_path):
    """``--offline-exact K`` keeps every slot exact: the rows are the teacher's K most likely tokens
    in order, their probabilities summing to less than 1 (the rest lumped into the loss's tail)."""
    out = tmp_path / "plain"
    distill.prepare(distill.DistillOptions(teacher["run"], offline_topk=8, offline_exact=8),
                    {"seq_len": 32, "batch_size": 4, "steps": 2, "seed": 0}, str(out), quiet=True)
    meta = json.loads((out / "topk-cache" / "meta.json").read_text())
    assert meta["exact"] == 8
    logprobs = np.load(out / "topk-cache" / "logprobs.npy").reshape(-1, 8)
    assert np.all(np.diff(logprobs, axis=-1) <= 0)  # descending: the top tokens, in order
    assert np.all(np.exp(logprobs.astype(np.float64)).sum(-1) < 1.0)
