"""Run-dir metrics (metrics.jsonl), the loss plot (loss.png) and the short end-of-run report."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

METRICS = "metrics.jsonl"


def read_metrics(run_dir: str) -> list[dict]:
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_metrics(run_dir: str, row: dict) -> None:
    with open(Path(run_dir) / METRICS, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def truncate_metrics(run_dir: str, last_step: int) -> None:
    """Drop rows past ``last_step`` (written after the checkpoint a resumed run starts from)."""
    rows = [r for r in read_metrics(run_dir) if r["step"] <= last_step]
    path = Path(run_dir) / METRICS
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)


def plot_losses(run_dir: str) -> str | None:
    rows = read_metrics(run_dir)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    train = [(r["step"], r["train_loss"]) for r in rows if "train_loss" in r]
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    if train:
        ax.plot(*zip(*train), label="train")
    if val:
        ax.plot(*zip(*val), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = str(Path(run_dir) / "loss.png")
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def summary(run_dir: str, sample: str | None = None) -> str:
    rows = read_metrics(run_dir)
    val = [r for r in rows if "val_loss" in r]
    speed = [r["tokens_per_s"] for r in rows if "tokens_per_s" in r]
    lines = [f"run dir:          {run_dir}"]
    if val:
        last = val[-1]
        lines.append(f"val perplexity:   {math.exp(last['val_loss']):.2f} (loss {last['val_loss']:.4f} at step {last['step']})")
    if speed:
        lines.append(f"tokens/s:         {sorted(speed)[len(speed) // 2]:,.0f} (median of logged steps)")
    if sample is not None:
        lines.append("sample:")
        lines.extend("  | " + line for line in sample.splitlines()[:16])
    return "\n".join(lines)
