"""Plots redrawn from a device's whole CSV (the newest figure of each case): speed-up of ours over
each peer against the swept size, and peak memory against size, one panel per op."""

from __future__ import annotations

import math
import os
from collections import defaultdict

from llmkernels.bench.results import Row, device_slug, latest, series_of, size_of


def _series(rows: list[Row], keep) -> dict[str, dict[str, list[tuple[int, Row]]]]:
    """op -> line label -> [(size, row)] sorted by size, for the rows ``keep`` accepts."""
    found: dict[str, dict[str, list[tuple[int, Row]]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        size = size_of(row)
        if size is None or not keep(row):
            continue
        label = f"{row.mode} {series_of(row)}: {row.provider}"
        if row.metric.startswith("speedup_vs:"):
            label += f" vs {row.metric.split(':', 1)[1]}"
        found[row.op][label].append((size, row))
    return {op: {label: sorted(points, key=lambda p: p[0]) for label, points in lines.items()} for op, lines in found.items()}


def _figure(panels, title: str, ylabel: str, path: str, unity: bool) -> str | None:
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 4.5 * rows), squeeze=False)
    for ax, (op, lines) in zip(axes.flat, sorted(panels.items())):
        for label, points in sorted(lines.items()):
            xs = [p[0] for p in points]
            ys = [p[1].median for p in points]
            spread = [[p[1].median - p[1].p20 for p in points], [p[1].p80 - p[1].median for p in points]]
            ax.errorbar(xs, ys, yerr=spread, marker="o", markersize=3, capsize=2, linewidth=1, label=label)
        if unity:
            ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xscale("log", base=2)
        ax.set_title(op)
        ax.set_xlabel("size (the swept dimension: S or V)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=5, loc="best")
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw(rows: list[Row], out_dir: str) -> list[str]:
    """Write ``<device>-speedup.png`` and ``<device>-memory.png`` per device in ``rows``; return the paths."""
    written = []
    by_device: dict[str, list[Row]] = defaultdict(list)
    for row in latest(rows):
        by_device[row.device].append(row)
    for device, device_rows in by_device.items():
        slug = device_slug(device)
        speedups = _series(device_rows, lambda r: r.metric.startswith("speedup_vs:"))
        memory = _series(device_rows, lambda r: r.metric == "peak_mb")
        for panels, name, ylabel, unity in ((speedups, "speedup", "speed-up of ours (median, p20-p80)", True),
                                            (memory, "memory", "peak memory added by a step (MB)", False)):
            path = _figure(panels, f"{device}: {name} against size", ylabel, os.path.join(out_dir, f"{slug}-{name}.png"), unity)
            if path:
                written.append(path)
    return written
