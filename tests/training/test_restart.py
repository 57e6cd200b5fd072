"""A run that stops before its first checkpoint (a crash, Ctrl-C) leaves a directory that can be
started again with the same command, or resumed (from step 0), and either gives the losses of
an uninterrupted run."""

import json
import os

import pytest

from llmkernels import cli
from llmkernels.training import checkpoint
from tests.training.conftest import DEFAULT_OPS, TINY_FLAGS

FLAGS = ["--steps", "4", "--log-every", "1", "--eval-every", "4", "--seed", "3"]


def _train(corpus, out, *extra):
    return cli.main(["train", "--data", corpus, "--out", str(out), "--ops", DEFAULT_OPS, *TINY_FLAGS, *FLAGS, *extra])


def _losses(run):
    return [(r["step"], r["train_loss"]) for r in map(json.loads, open(os.path.join(run, "metrics.jsonl")))]


def _crash_before_first_checkpoint(corpus, out, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "save", interrupted)
        assert _train(corpus, out) == 130
    assert (out / "config.json").exists() and checkpoint.folder(str(out)) is None
    assert _losses(out)  # it logged steps before it stopped


@pytest.mark.parametrize("how", ["restart", "resume"])
def test_a_run_stopped_before_its_first_checkpoint_can_go_on(corpus, tmp_path, monkeypatch, capsys, how):
    full = tmp_path / "full"
    assert _train(corpus, full) == 0
    run = tmp_path / "run"
    _crash_before_first_checkpoint(corpus, run, monkeypatch)
    capsys.readouterr()
    assert _train(corpus, run, *(["--resume"] if how == "resume" else [])) == 0, capsys.readouterr().err
    assert _losses(run) == _losses(full)
    assert (run / "checkpoint" / "model.safetensors").read_bytes() == (full / "checkpoint" / "model.safetensors").read_bytes()
