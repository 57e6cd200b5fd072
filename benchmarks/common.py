"""pytest's side of the harness (llmkernels.bench): one test per (case, contender).

The first test of a case measures every contender of it in interleaved rounds through
``llmkernels.bench.measure`` (the ratio lines and CSV rows come from there); each test then gives
pytest-benchmark's table its own row: a few timed calls of that contender's real step, the peer as
its own row. Memory-only cases are tests of their own, with no pytest-benchmark row (nothing is
timed there).

LLMKERNELS_BENCH_TINY=1 runs every case at a toy size (a smoke test of the files).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from llmkernels.bench import ceilings as ceiling_probe
from llmkernels.bench import results, runner
from llmkernels.bench.measure import measure_case

ROWS: list = []
LINES: list[str] = []
_current: dict = {}  # the case being measured: only one case's tensors are alive at a time
_ceilings: list = []
TABLE_SECONDS = 1.0  # about this long per pytest-benchmark row: the comparison itself is the interleaved run


def device() -> str:
    return runner.default_device()


def ceilings():
    if not _ceilings:
        _ceilings.append(ceiling_probe.measure(device(), rounds=3 if runner.tiny() else 7, tiny=runner.tiny()))
        ROWS.extend(_ceilings[0].rows())
    return _ceilings[0]


def _specs(op: str) -> list:
    return runner.plan([op], "full", device())


def cases(op: str) -> list:
    """pytest params (spec, contender) of every timed case of ``op``, case by case."""
    params = []
    for spec in _specs(op):
        probe = spec.tiny().build(device())  # the contenders' names, without the real problem's tensors
        if not probe.timed:
            continue
        for name in probe.providers:
            params.append(pytest.param(spec, name, id=f"{spec.id}-{name}"))
    return params


def memory_cases(op: str) -> list:
    return [pytest.param(spec, id=spec.id) for spec in _specs(op) if not spec.tiny().build(device()).timed]


def _measured(spec):
    if _current.get("spec") != spec:
        _current.clear()  # free the previous case's tensors first
        case = spec.build(device())
        measured = measure_case(case, spec, device(), ceilings(), rounds=1 if runner.tiny() else None, warmup=1)
        ROWS.extend(measured.rows)
        LINES.extend(measured.lines)
        _current.update(spec=spec, measured=measured)
    return _current["measured"]


def table_rounds(samples: list[float]) -> int:
    """Rounds of a pytest-benchmark row: 1 to 5, about TABLE_SECONDS in all (a 9 s step is timed once)."""
    if runner.tiny() or not samples:
        return 1
    return max(1, min(5, round(TABLE_SECONDS / max(sorted(samples)[len(samples) // 2], 1e-9))))


def run_case(benchmark, spec, provider: str) -> None:
    measured = _measured(spec)
    if provider not in measured.case.providers:
        pytest.skip(f"{provider} does not run here (see the note in the comparison table)")
    rounds = table_rounds(measured.samples.get(provider, []))
    benchmark.pedantic(measured.case.providers[provider], rounds=rounds, iterations=1, warmup_rounds=0)


def run_memory(spec) -> None:
    measured = measure_case(spec.build(device()), spec, device(), None)
    ROWS.extend(measured.rows)
    LINES.extend(measured.lines)


def record(lines: list[str], rows: list) -> None:
    """For benchmarks that measure outside the harness's cases (the training step): same lines, same rows."""
    LINES.extend(lines)
    ROWS.extend(rows)


def child_result(cmd: list[str], what: str, cwd: str | None = None) -> dict:
    """Runs a benchmark's fresh-process contender and returns the JSON it printed on its
    ``BENCH_RESULT `` line (its stderr's tail in the error when it printed none)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("BENCH_RESULT "):
            return json.loads(line[len("BENCH_RESULT "):])
    raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")


def finish() -> str | None:
    """Append this session's rows to the device's CSV and redraw its plots; the CSV's path."""
    if not ROWS:
        return None
    label = results.device_name(device())
    path = runner.csv_path(label)
    results.append(path, results.stamp(ROWS, label))
    runner.redraw(path)
    return path


def format_table() -> str:
    return "\n".join(["", "llmkernels benchmark comparison (median of interleaved rounds, p20-p80, one run)"] + LINES)
