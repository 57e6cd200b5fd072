"""Runs survive faults: ``llmkernels train`` is killed with SIGKILL at seeded random points, among
them every stage of a checkpoint write; after each kill the run dir loads, and ``--resume`` goes on
to exactly the losses and weights of a run that was never interrupted."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import torch

from llmkernels import cli
from llmkernels.models import GPT, GPTConfig
from llmkernels.training import checkpoint
from tests.training.conftest import DEFAULT_OPS, TINY_FLAGS

STEPS = 10
FLAGS = [*TINY_FLAGS, "--ops", DEFAULT_OPS, "--steps", str(STEPS), "--log-every", "1", "--eval-every", "3",
         "--save-every", "1", "--seed", "5"]
# Where checkpoint.save can die, and the step of the checkpoint that must be found after a kill there
# at step s: a half-written or complete temp folder leaves the previous one, a kill between the two
# renames leaves it as checkpoint.old, and a kill after the swap leaves the new one.
STAGES = {"model-written": -1, "written": -1, "old-moved": -1, "swapped": 0}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _start(corpus, run, resume, kill_at=None):
    # One thread, here and in the uninterrupted run: the same arithmetic, and no spinning thread pool
    # on a busy CI machine.
    env = {**os.environ, checkpoint.KILL_ENV: kill_at or "", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "llmkernels", "train", "--data", corpus, "--out", str(run), *FLAGS]
    return subprocess.Popen(command + (["--resume"] if resume else []), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _steps_logged(run):
    try:
        return [json.loads(line)["step"] for line in open(run / "metrics.jsonl")]
    except (OSError, ValueError):
        return []


def _kill_after_step(process, run, step, delay):
    """SIGKILL from outside, ``delay`` seconds after ``step`` was logged (anywhere in the step loop,
    evaluation or checkpoint write), unless the run ends first."""
    while process.poll() is None and (max(_steps_logged(run), default=0) < step):
        time.sleep(0.01)
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=120)


def _saved_step(run):
    """The step of the checkpoint the run dir holds (0: none), after checking that it loads."""
    if checkpoint.folder(str(run)) is None:
        return 0
    config = json.loads((run / "config.json").read_text())
    state = checkpoint.load(str(run), GPT(GPTConfig.from_dict(config["model"])))
    return state["step"]


def _losses(run):
    return [(r["step"], r["train_loss"], r.get("val_loss")) for r in map(json.loads, open(run / "metrics.jsonl"))]


def test_killed_runs_resume_to_the_uninterrupted_losses(corpus, tmp_path):
    full = tmp_path / "full"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cli.main(["train", "--data", corpus, "--out", str(full), *FLAGS]) == 0
    finally:
        torch.set_num_threads(threads)

    rng = random.Random(15)  # the order of the checkpoint-stage kills, their steps, the outside kill
    stages = list(STAGES)
    rng.shuffle(stages)
    run, saved, before = tmp_path / "run", 0, None
    for stage in stages:
        step = saved + rng.randint(1, 2)
        resume = (run / "config.json").exists()  # killed before its config was written: start it again
        process = _start(corpus, run, resume, f"{stage}@{step}")
        assert process.wait(timeout=300) == -signal.SIGKILL, process.stderr.read()
        now = _saved_step(run)
        assert now == step + STAGES[stage], (stage, step)
        where = checkpoint.folder(str(run))
        where = where and where.name
        # Killed before the swap: the folder the run had; between the renames: the previous one as
        # checkpoint.old; after the swap: the new one.
        assert where == {"old-moved": "checkpoint.old" if step > 1 else None, "swapped": "checkpoint"}.get(stage, before)
        before = where
        saved = now
    # From outside, at a random moment of a later step (its forward, backward, evaluation or
    # checkpoint write); a run that finishes first is fine too.
    process = _start(corpus, run, resume=True)
    _kill_after_step(process, run, rng.randint(saved + 1, STEPS - 1), rng.uniform(0, 0.05))
    assert _saved_step(run) >= saved
    process = _start(corpus, run, resume=True)
    assert process.wait(timeout=300) == 0, process.stderr.read()
    assert _losses(run) == _losses(full)
    for name in ("model.safetensors", "optimizer.safetensors", "rng.safetensors"):
        assert (run / "checkpoint" / name).read_bytes() == (full / "checkpoint" / name).read_bytes(), name
    assert sorted(p.name for p in run.iterdir() if "checkpoint" in p.name) == ["checkpoint"]  # no temp or .old left
