"""The distillation report: teacher, distilled student and scratch student on the same validation
windows (perplexity), with their sizes and inference speed; report.json and report.png."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import types
from pathlib import Path

from llmkernels.models import GPT, GPTConfig
from llmkernels.training import checkpoint, data, loop, validation


def _load(run_dir: str) -> GPT:
    model = GPT(GPTConfig.from_dict(loop.read_run_config(run_dir)["model"]))
    checkpoint.load(run_dir, model)
    return model.eval()


def _figures(model: GPT, windows, batch: int, run_dir: str) -> dict:
    from llmkernels.training.distill import inference_tokens_per_s

    one_process = types.SimpleNamespace(rank=0, world=1)
    val_loss = validation.evaluate(model, windows, batch, contextlib.nullcontext, one_process)
    return {"run_dir": run_dir, "val_loss": val_loss, "val_perplexity": math.exp(val_loss),
            "params": model.num_parameters(), "tokens_per_s": inference_tokens_per_s(model, windows[:batch])}


def write(out: str, teacher, options, config, corpus) -> dict:
    from llmkernels.training.distill import KD, SCRATCH

    windows = data.val_windows(corpus.val, config.context, config.eval_batches * config.batch_size)
    report = {
        "teacher": _figures(teacher.model, windows, config.batch_size, teacher.run_dir),
        "student_kd": _figures(_load(os.path.join(out, KD)), windows, config.batch_size, os.path.join(out, KD)),
        "student_scratch": _figures(_load(os.path.join(out, SCRATCH)), windows, config.batch_size, os.path.join(out, SCRATCH)),
        "options": dataclasses.asdict(options),
        "student": {"preset": config.preset, "steps": config.steps, "seed": config.seed, "batch_size": config.batch_size},
        "validation_windows": len(windows),
    }
    report["kd_beats_scratch"] = report["student_kd"]["val_perplexity"] < report["student_scratch"]["val_perplexity"]
    Path(out, "report.json").write_text(json.dumps(report, indent=1))
    _plot(out, report)
    return report


def _plot(out: str, report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["teacher", "student_kd", "student_scratch"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.bar(names, [report[n]["val_perplexity"] for n in names], color=["#555", "#2a7", "#c84"])
    left.set_title("validation perplexity (lower is better)")
    right.bar(names, [report[n]["tokens_per_s"] for n in names], color=["#555", "#2a7", "#c84"])
    right.set_title("inference tokens/s")
    for axis in (left, right):
        axis.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(Path(out, "report.png"), dpi=100)
    plt.close(fig)


def summary(report: dict) -> str:
    lines = []
    for name in ("teacher", "student_kd", "student_scratch"):
        r = report[name]
        lines.append(f"{name:<16} val perplexity {r['val_perplexity']:9.2f}   {r['params']:>10,} params   "
                     f"{r['tokens_per_s']:>10,.0f} tokens/s (inference)")
    verdict = "beats" if report["kd_beats_scratch"] else "does NOT beat"
    lines.append(f"the distilled student {verdict} the scratch student after {report['student']['steps']} steps")
    return "\n".join(lines)
