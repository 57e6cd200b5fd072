"""FSDP2 (fully_shard, gloo on the CPU) with two processes: it matches one process with the whole
batch, and resumes from its sharded checkpoint with the losses of an uninterrupted run."""

import json
import os
import subprocess
import sys

import pytest

from llmkernels import cli
from llmkernels.models import GPT, GPTConfig
from llmkernels.training import checkpoint
from llmkernels.training.loop import CHECKSUM_ENV, _weights_sha
from tests.training.conftest import DEFAULT_OPS, TINY_FLAGS


def _flags(corpus):
    # save-every 1: a checkpoint at each step, so the resumed run starts from a sharded one.
    return ["--data", corpus, "--ops", DEFAULT_OPS, *TINY_FLAGS, "--steps", "4", "--log-every", "1",
            "--eval-every", "4", "--save-every", "1", "--seed", "5"]


def _torchrun(args, env, timeout=240):
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "llmkernels", "train", *args], env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]


def _rows(run):
    return [json.loads(line) for line in open(run / "metrics.jsonl")]


def test_fsdp_matches_one_process_and_resumes_from_its_shards(corpus, tmp_path):
    flags = _flags(corpus)
    env = {**os.environ, CHECKSUM_ENV: str(tmp_path / "sums"), "OMP_NUM_THREADS": "1"}
    whole = tmp_path / "fsdp"
    _torchrun([*flags, "--fsdp", "--batch-size", "2", "--out", str(whole)], env)
    ranks = [json.loads((tmp_path / "sums" / f"rank{r}.json").read_text()) for r in (0, 1)]
    # The hash is over the gathered full weights: the shards of both ranks make one model.
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"] and ranks[0]["step"] == 4
    saved = json.loads((whole / "checkpoint" / "state.json").read_text())
    assert saved["sharded"] == 2 and any(name.startswith("shards/") for name in saved["sha256"])
    # One process (llmkernels sample) reassembles the same weights from the shards.
    model = GPT(GPTConfig.from_dict(json.loads((whole / "config.json").read_text())["model"]))
    checkpoint.load(str(whole), model)
    assert _weights_sha(model.state_dict()) == ranks[0]["weights_sha256"]

    single = tmp_path / "single"
    assert cli.main(["train", *flags, "--batch-size", "4", "--out", str(single)]) == 0
    fsdp_rows, single_rows = _rows(whole), _rows(single)
    assert [r["step"] for r in fsdp_rows] == [1, 2, 3, 4]
    for a, b in zip(fsdp_rows, single_rows):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4), (a, b)
    assert fsdp_rows[-1]["val_loss"] == pytest.approx(single_rows[-1]["val_loss"], rel=1e-4)

    resumed = tmp_path / "resumed"
    _torchrun([*flags, "--fsdp", "--batch-size", "2", "--out", str(resumed), "--stop-at", "2"], env)
    _torchrun([*flags, "--fsdp", "--batch-size", "2", "--out", str(resumed), "--resume"], env)
    resumed_rows = _rows(resumed)
    assert [r["step"] for r in resumed_rows] == [1, 2, 3, 4]
    # Exact: the shards, AdamW's moments and the RNG came back bit for bit.
    assert [r["train_loss"] for r in resumed_rows] == [r["train_loss"] for r in fsdp_rows]
    assert resumed_rows[-1]["val_loss"] == fsdp_rows[-1]["val_loss"]


def test_fsdp_needs_several_processes(corpus, tmp_path, capsys):
    assert cli.main(["train", *_flags(corpus), "--fsdp", "--out", str(tmp_path / "one")]) != 0
    assert "--fsdp" in capsys.readouterr().err
