"""Timing with honest statistics: contenders run in interleaved rounds (peer, ours, peer, ours,
...), so that a slow spell of a shared machine falls on every contender alike, and each one is
summarised by its median with the 20th and 80th percentiles as its spread.

Ratios are taken round by round (the peer's time over ours within the same round), so their
spread is the spread of the comparison itself, not of either side alone.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Sequence


@dataclasses.dataclass(frozen=True)
class Summary:
    median: float
    p20: float
    p80: float

    def scaled(self, factor: float) -> "Summary":
        """The same summary in other units (a positive factor keeps the order of p20 and p80)."""
        return Summary(self.median * factor, self.p20 * factor, self.p80 * factor)


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between the closest ranks (numpy's
    default), so that the 50th is the median of an even count too."""
    if not samples:
        raise ValueError("samples must not be empty")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100; got {q}")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(samples: Sequence[float]) -> Summary:
    return Summary(percentile(samples, 50), percentile(samples, 20), percentile(samples, 80))


def ratios(peer: Sequence[float], ours: Sequence[float]) -> list[float]:
    """Per-round speed-up of ours over the peer (peer time / our time, round by round)."""
    if len(peer) != len(ours):
        raise ValueError(f"one sample per round each: {len(peer)} peer samples, {len(ours)} of ours")
    return [p / o for p, o in zip(peer, ours)]


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def time_call(fn: Callable[[], object], device: str = "cpu", iterations: int = 1) -> float:
    """Seconds per call of ``fn``, averaged over ``iterations`` back-to-back calls (the device
    drained before and after, so queued GPU work is counted)."""
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    _synchronize(device)
    return (time.perf_counter() - start) / iterations


def calibrate(fn: Callable[[], object], device: str, min_sample_s: float) -> int:
    """Calls per sample so that one sample lasts at least ``min_sample_s`` (1 for slow calls: a
    CPU step of many milliseconds needs no batching; a GPU kernel of microseconds does)."""
    once = time_call(fn, device)
    if once >= min_sample_s or once <= 0:
        return 1
    return min(1000, math.ceil(min_sample_s / once))


def interleaved(contenders: dict[str, Callable[[], object]], rounds: int, warmup: int = 1, device: str = "cpu",
                min_sample_s: float = 0.0, on_round: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Seconds per call of each contender, one sample per round, the contenders run in turn in
    every round; ``warmup`` rounds first are run and dropped."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1; got {rounds}")
    iterations = {name: calibrate(fn, device, min_sample_s) if min_sample_s > 0 else 1
                  for name, fn in contenders.items()}
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for index in range(warmup + rounds):
        for name, fn in contenders.items():
            seconds = time_call(fn, device, iterations[name])
            if index >= warmup:
                samples[name].append(seconds)
        if on_round is not None:
            on_round()
    return samples
