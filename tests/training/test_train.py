import json
import math
import os
import shutil
import warnings

import pytest

from llmkernels import bf16_support, cli
from tests.training.conftest import DEFAULT_OPS, TINY_FLAGS


def train(corpus, out, *extra, ops=DEFAULT_OPS):
    return cli.main(["train", "--data", corpus, "--out", str(out), "--ops", ops, *TINY_FLAGS, *extra])


def rows(run):
    return [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]


def losses(run):
    return [(r["step"], r["train_loss"], r.get("val_loss")) for r in rows(run)]


def test_run_dir_contents_and_sample(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(corpus, run, "--steps", "12", "--log-every", "4", "--eval-every", "6") == 0
    files = set(os.listdir(run))
    assert {"config.json", "metrics.jsonl", "loss.png", "tokenizer.json", "checkpoint"} <= files
    assert set(os.listdir(run / "checkpoint")) == {"model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"}
    metrics = rows(run)
    assert [r["step"] for r in metrics] == [4, 6, 8, 12]
    assert all(r["tokens_per_s"] > 0 and math.isfinite(r["train_loss"]) for r in metrics)
    assert [r["step"] for r in metrics if "val_loss" in r] == [6, 12]
    assert metrics[-1]["val_perplexity"] == pytest.approx(math.exp(metrics[-1]["val_loss"]))
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]  # it learns
    out = capsys.readouterr().out
    assert "val perplexity" in out and "tokens/s" in out and str(run) in out
    assert cli.main(["sample", "--run", str(run), "--prompt", "def ", "--tokens", "20"]) == 0
    assert capsys.readouterr().out.startswith("def ")


def test_stop_and_resume_is_bit_exact(corpus, tmp_path):
    flags = ["--steps", "8", "--log-every", "1", "--eval-every", "3", "--save-every", "2", "--seed", "7"]
    full = tmp_path / "full"
    assert train(corpus, full, *flags) == 0
    part = tmp_path / "part"
    assert train(corpus, part, *flags, "--stop-at", "3") == 0
    assert [r["step"] for r in rows(part)] == [1, 2, 3]
    saved_at_3 = tmp_path / "ckpt3"
    shutil.copytree(part / "checkpoint", saved_at_3)
    assert train(corpus, part, *flags, "--stop-at", "5", "--resume") == 0
    # As if the process died after logging step 5 but before its checkpoint: back to step 3's.
    shutil.rmtree(part / "checkpoint")
    shutil.copytree(saved_at_3, part / "checkpoint")
    assert rows(part)[-1]["step"] == 5
    assert train(corpus, part, "--out", str(part), "--resume") == 0  # flags come from the saved config
    assert losses(part) == losses(full)
    assert (part / "checkpoint" / "model.safetensors").read_bytes() == (full / "checkpoint" / "model.safetensors").read_bytes()
    assert (part / "checkpoint" / "optimizer.safetensors").read_bytes() == (full / "checkpoint" / "optimizer.safetensors").read_bytes()


def test_grad_accumulation_matches_a_bigger_batch(corpus, tmp_path):
    big = tmp_path / "big"
    acc = tmp_path / "acc"
    assert train(corpus, big, "--steps", "3", "--log-every", "1", "--batch-size", "4") == 0
    assert train(corpus, acc, "--steps", "3", "--log-every", "1", "--batch-size", "2", "--grad-accum", "2") == 0
    for a, b in zip(losses(big), losses(acc)):
        assert a[1] == pytest.approx(b[1], rel=1e-5)


@pytest.mark.parametrize("native", [True, False], ids=["native-bf16-cpu", "fallback-bf16-cpu"])
def test_bf16_autocast_trains(corpus, tmp_path, monkeypatch, native):
    # Whether the CPU multiplies bf16 natively decides only the warning: training runs either way.
    monkeypatch.setattr(bf16_support, "cpu_bf16_matmul_is_native", lambda: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert train(corpus, tmp_path / "bf16", "--steps", "4", "--log-every", "2", "--bf16") == 0
    assert all(math.isfinite(r["train_loss"]) for r in rows(tmp_path / "bf16"))
    said = [w for w in caught if "no native bf16 matrix multiply" in str(w.message)]
    assert len(said) == (0 if native else 1)


def _expect_error(capsys, argv, message):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err


def test_bad_input_is_one_line_and_overwrites_nothing(corpus, tmp_path, capsys):
    base = ["train", "--ops", DEFAULT_OPS, *TINY_FLAGS, "--steps", "2"]
    _expect_error(capsys, base + ["--data", str(tmp_path / "missing")], "does not exist")
    (tmp_path / "empty").mkdir()
    _expect_error(capsys, base + ["--data", str(tmp_path / "empty")], "holds no text")
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "a.txt").write_text("x = 1\n")
    _expect_error(capsys, base + ["--data", str(tmp_path / "small"), "--out", str(tmp_path / "r0")], "too small")
    assert not (tmp_path / "r0").exists()
    _expect_error(capsys, base + ["--data", corpus, "--preset", "huge"], "unknown preset")
    _expect_error(capsys, base + ["--data", corpus, "--backend", "warp"], "unknown backend")
    _expect_error(capsys, base + ["--data", corpus, "--resume", "--out", str(tmp_path / "none")], "holds no run")

    run = tmp_path / "run"
    assert train(corpus, run, "--steps", "2") == 0
    snapshot = {p: (run / p).read_bytes() for p in ("config.json", "metrics.jsonl", "checkpoint/model.safetensors")}
    _expect_error(capsys, base + ["--data", corpus, "--out", str(run)], "already holds a run")
    _expect_error(capsys, base + ["--data", corpus, "--out", str(run), "--resume", "--seed", "9"], "cannot resume: --seed")
    _expect_error(capsys, base + ["--data", corpus, "--out", str(run), "--resume", "--d-model", "64"], "cannot resume: --model")
    model = run / "checkpoint" / "model.safetensors"
    damaged = bytearray(snapshot["checkpoint/model.safetensors"])
    damaged[len(damaged) // 2] ^= 0xFF
    model.write_bytes(bytes(damaged))
    _expect_error(capsys, base + ["--data", corpus, "--out", str(run), "--resume", "--steps", "4"], "corrupt checkpoint")
    _expect_error(capsys, ["sample", "--run", str(run)], "corrupt checkpoint")
    model.write_bytes(b"\x00\x01")
    _expect_error(capsys, base + ["--data", corpus, "--out", str(run), "--resume", "--steps", "4"], "corrupt checkpoint")
    for p, content in snapshot.items():
        if p != "checkpoint/model.safetensors":
            assert (run / p).read_bytes() == content, p


def test_tour_is_a_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["tour", "--help"])
    assert exit_info.value.code == 0 and "usage: llmkernels tour" in capsys.readouterr().out


def test_backend_flag_wraps_the_run(corpus, tmp_path, monkeypatch):
    import llmkernels

    seen = []
    original = llmkernels.attention

    def spy(*args, **kwargs):
        seen.append(llmkernels.backends.requested_backend())
        return original(*args, **kwargs)

    monkeypatch.setattr(llmkernels, "attention", spy)
    assert train(corpus, tmp_path / "ref", "--steps", "2", "--log-every", "1", "--backend", "reference") == 0
    assert seen and set(seen) == {"reference"}
    seen.clear()
    assert train(corpus, tmp_path / "auto", "--steps", "2", "--log-every", "1") == 0
    assert seen and set(seen) == {"auto"}
    for a, b in zip(losses(tmp_path / "ref"), losses(tmp_path / "auto")):
        assert a[1] == pytest.approx(b[1], rel=1e-4)
