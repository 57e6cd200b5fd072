"""The accumulated record of benchmark runs: one CSV per device under benchmarks/results/, a
header line first, rows appended by every run (never rewritten), so plots and tables can be
redrawn from every run a machine has made."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import os
import platform
import re
import subprocess

HEADER = ("op", "provider", "mode", "metric", "shape", "median", "p20", "p80", "device", "versions", "commit", "date")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass
class Row:
    """One measured figure: ``metric`` is ``seconds``, ``peak_mb``, ``speedup_vs:<peer>``,
    ``floor_fraction``, ``GB/s``, ``GFLOP/s`` or ``TFLOP/s``; the run's context (device, versions,
    commit, date) is filled in when the row is written."""

    op: str
    provider: str
    mode: str
    metric: str
    shape: str
    median: float
    p20: float
    p80: float
    device: str = ""
    versions: str = ""
    commit: str = ""
    date: str = ""


# The dimension each op is swept over (`llmkernels bench --sweep`): the x axis of its plots.
SIZE_KEYS = {"cross_entropy": "V", "linear_cross_entropy": "V", "distillation_loss": "V", "linear_distillation_loss": "V"}


def size_of(row: Row) -> int | None:
    """The swept dimension's value, read from the shape ("B=1 H=8 S=2048 ..."), or None."""
    found = re.search(rf"(?:^| ){SIZE_KEYS.get(row.op, 'S')}=(\d+)", row.shape)
    return int(found.group(1)) if found else None


def series_of(row: Row) -> str:
    """The shape without its swept dimension: the rows of one line of a plot."""
    return re.sub(rf"(?:^| ){SIZE_KEYS.get(row.op, 'S')}=\d+", "", row.shape).strip()


def results_dir() -> str:
    """benchmarks/results of this checkout, or $LLMKERNELS_BENCH_RESULTS (tests write elsewhere)."""
    return os.environ.get("LLMKERNELS_BENCH_RESULTS") or os.path.join(REPO_ROOT, "benchmarks", "results")


def device_name(device: str = "cpu") -> str:
    """What the figures were taken on: ``cuda: <the card's name>`` or ``cpu: <the CPU's model name>``."""
    if device.startswith("cuda"):
        import torch

        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {_cpu_name()}"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def device_slug(name: str) -> str:
    """A file name from a device name: ``NVIDIA H200`` -> ``nvidia-h200``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def csv_path(device_label: str) -> str:
    return os.path.join(results_dir(), f"{device_slug(device_label)}.csv")


def versions() -> str:
    import torch

    import llmkernels

    parts = [f"llmkernels {llmkernels.__version__}", f"torch {torch.__version__}", f"python {platform.python_version()}"]
    try:
        import triton

        parts.append(f"triton {triton.__version__}")
    except ImportError:
        pass
    if torch.version.cuda:
        parts.append(f"cuda {torch.version.cuda}")
    return "; ".join(parts)


def commit() -> str:
    """The checkout's short commit, ``+dirty`` when it has uncommitted changes; ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO_ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head + ("+dirty" if dirty else "")) if head else "unknown"


def context(device_label: str) -> dict:
    """A run's context: taken once, so one date groups all the rows of the run."""
    return dict(device=device_label, versions=versions(), commit=commit(),
                # microseconds: two quick runs can start within one second
                date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def stamp(rows: list[Row], device_label: str, run: dict | None = None) -> list[Row]:
    """The run's context (``run``, else taken now) on every row that has none of its own."""
    run = run or context(device_label)
    return [dataclasses.replace(row, **{k: v for k, v in run.items() if not getattr(row, k)}) for row in rows]


def append(path: str, rows: list[Row]) -> None:
    """Append ``rows`` to the CSV at ``path``, writing the header first when the file is new or empty."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(HEADER)
        for row in rows:
            writer.writerow([_cell(getattr(row, name)) for name in HEADER])


def _cell(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def read(path: str) -> list[Row]:
    """Every row of a results CSV (the header checked, so a foreign file is refused by name)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return []
        if tuple(header) != HEADER:
            raise ValueError(f"{path}: not a benchmark results file (header {header!r}, expected {list(HEADER)})")
        rows = []
        for values in reader:
            fields = dict(zip(HEADER, values))
            for name in ("median", "p20", "p80"):
                fields[name] = float(fields[name])
            rows.append(Row(**fields))
    return rows


def latest(rows: list[Row]) -> list[Row]:
    """The newest row of each (op, provider, mode, metric, shape, device): what the plots show."""
    newest: dict[tuple, Row] = {}
    for row in rows:
        key = (row.op, row.provider, row.mode, row.metric, row.shape, row.device)
        if key not in newest or row.date >= newest[key].date:
            newest[key] = row
    return list(newest.values())
