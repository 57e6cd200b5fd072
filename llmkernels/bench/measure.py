"""One case measured: correctness first, then every contender in interleaved rounds, ratios round
by round, the fraction of the roofline floor, memory in fresh processes; returned as CSV rows and
the comparison lines the terminal (and BENCHMARKS.md) quote."""

from __future__ import annotations

import dataclasses

from llmkernels.bench import memory as peak_memory
from llmkernels.bench.case import Case
from llmkernels.bench.ceilings import Ceilings
from llmkernels.bench.results import Row
from llmkernels.bench.stats import Summary, interleaved, ratios, summarize


@dataclasses.dataclass
class Measured:
    case: Case
    rows: list[Row]
    lines: list[str]
    samples: dict[str, list[float]]


def _row(case: Case, provider: str, metric: str, s: Summary) -> Row:
    return Row(case.op, provider, case.mode, metric, case.shape, s.median, s.p20, s.p80)


def _fixed(value: float) -> Summary:
    return Summary(value, value, value)


def _spread(s: Summary, unit: str = "x", scale: float = 1.0, digits: int = 2) -> str:
    return f"{s.median * scale:.{digits}f}{unit} ({s.p20 * scale:.{digits}f}-{s.p80 * scale:.{digits}f})"


def drop_failing_optional(case: Case) -> list[str]:
    """Run each optional peer once; one that raises here (an unsupported dtype, a missing GPU
    backend, an incompatible liger build) is dropped, and a note says so."""
    notes = []
    for name in [n for n in case.optional if n in case.peers]:
        try:
            case.peers[name]()
        except Exception as e:  # noqa: BLE001 - any failure means "does not run here"
            del case.peers[name]
            case.targets.pop(name, None)
            notes.append(f"      ({name} skipped: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})")
    return notes


def comparisons(case: Case) -> list[tuple[str, str, float | None]]:
    """(ours, peer, target) for every pair the case compares: each of ours against each peer, then its own pairs."""
    found = [(mine, peer, case.targets.get(peer)) for mine in case.ours for peer in case.peers]
    return found + [pair for pair in case.pairs if pair[0] in case.ours and pair[1] in case.providers]


def _floor(case: Case, provider: str, ceilings: Ceilings | None) -> tuple[float, str, float]:
    """(floor seconds, the rate's unit, the work per call in that unit) for ``provider``."""
    nbytes, flops = case.floor_for.get(provider, (case.floor_bytes, case.floor_flops))
    if ceilings is None or nbytes + flops == 0:
        return 0.0, "", 0.0
    floor = ceilings.floor_seconds(nbytes, flops, case.dtype)
    if flops / (ceilings.gemm_gflops.get(case.dtype, ceilings.gemm_gflops["fp32"]).median * 1e9) >= \
            nbytes / (ceilings.copy_gbps.median * 1e9):
        return floor, "GFLOP/s", flops / 1e9
    return floor, "GB/s", nbytes / 1e9


def timing_rows(case: Case, samples: dict[str, list[float]], ceilings: Ceilings | None) -> tuple[list[Row], list[str]]:
    rows, lines = [], []
    for name, values in samples.items():
        s = summarize(values)
        rows.append(_row(case, name, "seconds", s))
        floor, unit, work = _floor(case, name, ceilings)
        note = ""
        if floor > 0:
            rate = summarize([work / t for t in values])
            rows.append(_row(case, name, unit, rate))
            if name in case.ours:
                fraction = summarize([floor / t for t in values])
                rows.append(_row(case, name, "floor_fraction", fraction))
                note = f"   {fraction.median:6.1%} of the floor ({rate.median:,.1f} {unit})"
        marker = " (ours)" if name in case.ours else ""
        lines.append(f"      {name:<44} {_spread(s, ' ms', 1e3)}{marker}{note}")
    for mine, peer, target in comparisons(case):
        s = summarize(ratios(samples[peer], samples[mine]))
        rows.append(_row(case, mine, f"speedup_vs:{peer}", s))
        goal = ""
        if target:
            rows.append(_row(case, mine, f"target_vs:{peer}", _fixed(target)))
            goal = f"   target >= {target}x: {'met' if s.median >= target else 'NOT met'}"
        who = f"{mine} vs {peer}" if len(case.ours) > 1 else f"vs {peer}"
        lines.append(f"      speed-up {who:<44} {_spread(s)}{goal}")
    return rows, lines


def memory_rows(case: Case, spec, device: str) -> tuple[list[Row], list[str]]:
    why = peak_memory.supported(device)
    if why:
        return [], [f"      (peak memory not measured: {why})"]
    rows, lines = [], []
    for name in case.providers:
        try:
            added = peak_memory.measure(spec, name, device, case.warmup_full)
        except Exception as e:  # noqa: BLE001 - one contender that cannot run there is a note, not the end
            lines.append(f"      peak memory {name:<40} not measured: {e}")
            continue
        rows.append(_row(case, name, "peak_mb", _fixed(added)))
        lines.append(f"      peak memory {name:<40} {added:10.1f} MB added{' (ours)' if name in case.ours else ''}")
    return rows, lines


def measure_case(case: Case, spec, device: str, ceilings: Ceilings | None, rounds: int | None = None, warmup: int = 1,
                 memory: bool = True) -> Measured:
    """Everything the report says about one case (see the module docstring)."""
    if case.check is not None:
        case.check()
    lines = [f"  {case.label}"] + drop_failing_optional(case)
    rows: list[Row] = []
    samples: dict[str, list[float]] = {}
    if case.timed:
        samples = interleaved(case.providers, rounds=rounds or case.rounds, warmup=warmup, device=device,
                              min_sample_s=0.002 if device.startswith("cuda") else 0.0)
        timed_rows, timed_lines = timing_rows(case, samples, ceilings)
        rows += timed_rows
        lines += timed_lines
    if case.extra_rows is not None:
        for provider, metric, value in case.extra_rows():
            rows.append(_row(case, provider, metric, _fixed(value)))
            lines.append(f"      {metric} {provider:<44} {value:10.1f}")
    if memory and case.memory:
        mem_rows, mem_lines = memory_rows(case, spec, device)
        rows += mem_rows
        lines += mem_lines
    return Measured(case, rows, lines, samples)
