"""Shared benchmark helpers: interleaved timing and the comparison table.

The machines are shared and noisy, so contenders are timed in interleaved rounds (peer, ours,
peer, ours, ...) and compared by the ratio of their medians within one run.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from typing import Callable

RESULTS: list[dict] = []
RESULTS_DIR = os.path.join(os.path.dirname(__file__), "results")


def interleaved_medians(contenders: dict[str, Callable[[], object]], rounds: int = 7, warmup: int = 2) -> dict[str, float]:
    """Median seconds per contender over `rounds` interleaved rounds (after `warmup` rounds)."""
    samples = {name: [] for name in contenders}
    for round_index in range(warmup + rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                samples[name].append(elapsed)
    return {name: statistics.median(values) for name, values in samples.items()}


def record(case: str, medians: dict[str, float], ours: str, target: dict[str, float] | None = None) -> None:
    """Store one comparison: each contender's median and ours' speed-up over it."""
    row = {"case": case, "ours": ours, "medians_s": medians, "speedup_vs": {}}
    for name, seconds in medians.items():
        if name != ours:
            row["speedup_vs"][name] = seconds / medians[ours]
    row["target"] = target or {}
    RESULTS.append(row)


def write_results() -> None:
    """The rows of this run, replacing the previous run's (the file holds one run, never grows)."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, "latest.jsonl"), "w", encoding="utf-8") as f:
        for row in RESULTS:
            f.write(json.dumps(row) + "\n")


def format_table() -> str:
    lines = ["", "llmkernels benchmark comparison (median of interleaved rounds, one run)"]
    for row in RESULTS:
        lines.append(f"  {row['case']}")
        for name, seconds in row["medians_s"].items():
            marker = " (ours)" if name == row["ours"] else ""
            lines.append(f"      {name:<40} {seconds * 1e3:10.2f} ms{marker}")
        for name, megabytes in row.get("memory_mb", {}).items():
            lines.append(f"      {name:<40} {megabytes:10.1f} MB")
        for name, ratio in row["speedup_vs"].items():
            target = row["target"].get(name)
            goal = f"   target >= {target}x: {'met' if ratio >= target else 'NOT met'}" if target else ""
            lines.append(f"      speed-up vs {name:<28} {ratio:8.2f}x{goal}")
    return "\n".join(lines)
