"""The harness's statistics and comparison rows, on known samples (no timing involved)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from llmkernels.bench.case import Case
from llmkernels.bench.ceilings import Ceilings
from llmkernels.bench.measure import drop_failing_optional, timing_rows
from llmkernels.bench.stats import Summary, interleaved, percentile, ratios, summarize


def test_median_and_percentiles_of_known_samples():
    assert summarize([5, 1, 4, 2, 3]) == Summary(3, 1.8, 4.2)  # ranks 0.8 and 3.2 of 0..4, interpolated
    assert summarize([4, 1, 3, 2]).median == 2.5
    assert summarize([7.0]) == Summary(7.0, 7.0, 7.0)
    assert percentile([1, 2, 3, 4, 5], 0) == 1 and percentile([1, 2, 3, 4, 5], 100) == 5


def test_percentiles_agree_with_numpy_on_random_samples():
    rng = random.Random(0)
    for n in (2, 3, 10, 101):
        samples = [rng.uniform(0, 10) for _ in range(n)]
        for q in (20, 50, 80):
            assert percentile(samples, q) == pytest.approx(float(np.percentile(samples, q)))


@pytest.mark.parametrize("samples,q,word", [([], 50, "samples"), ([1.0], 101, "q"), ([1.0], -1, "q")])
def test_bad_arguments_name_themselves(samples, q, word):
    with pytest.raises(ValueError, match=word):
        percentile(samples, q)


def test_ratios_are_taken_round_by_round():
    assert ratios([2.0, 9.0], [1.0, 3.0]) == [2.0, 3.0]
    with pytest.raises(ValueError, match="one sample per round"):
        ratios([1.0], [1.0, 2.0])


def test_contenders_run_in_interleaved_rounds_and_warmup_is_dropped():
    calls = []
    samples = interleaved({"peer": lambda: calls.append("peer"), "ours": lambda: calls.append("ours")}, rounds=3, warmup=2)
    assert calls == ["peer", "ours"] * 5
    assert {name: len(values) for name, values in samples.items()} == {"peer": 3, "ours": 3}
    with pytest.raises(ValueError, match="rounds"):
        interleaved({"a": lambda: None}, rounds=0)


def _case(**kw):
    return Case(op="toy", mode="fwd+bwd", shape="N=8 V=64 fp32", size=64, ours={"llmkernels[cpp]": lambda: None},
                peers={"peer": lambda: None}, **kw)


def test_comparison_rows_carry_speedups_targets_and_floor_fractions():
    # copy 10 GB/s and 100 GFLOP/s: 1e9 bytes make a floor of 0.1 s.
    ceilings = Ceilings(Summary(10.0, 9.0, 11.0), {"fp32": Summary(100.0, 90.0, 110.0)})
    case = _case(targets={"peer": 1.5}, floor_bytes=1e9)
    rows, lines = timing_rows(case, {"peer": [0.4, 0.8, 0.6], "llmkernels[cpp]": [0.2, 0.2, 0.4]}, ceilings)
    found = {(r.provider, r.metric): r for r in rows}
    assert found[("llmkernels[cpp]", "speedup_vs:peer")].median == pytest.approx(2.0)  # ratios 2, 4, 1.5
    assert found[("llmkernels[cpp]", "speedup_vs:peer")].p20 == pytest.approx(1.7)
    assert found[("llmkernels[cpp]", "target_vs:peer")].median == 1.5
    assert found[("llmkernels[cpp]", "floor_fraction")].median == pytest.approx(0.5)  # 0.1 s of 0.2 s
    assert found[("peer", "seconds")].median == pytest.approx(0.6)
    assert found[("peer", "GB/s")].median == pytest.approx(1e9 / 0.6 / 1e9)
    assert ("peer", "floor_fraction") not in found  # the floor fraction is ours' alone
    assert any("speed-up vs peer" in line and "2.00x" in line and "target >= 1.5x: met" in line for line in lines)


def test_an_optional_peer_that_cannot_run_here_is_dropped_with_a_note():
    def broken():
        raise RuntimeError("no kernel for this dtype")

    case = _case(optional=("liger",), targets={"liger": 1.0})
    case.peers["liger"] = broken
    notes = drop_failing_optional(case)
    assert "liger" not in case.peers and "liger" not in case.targets
    assert len(notes) == 1 and "liger skipped" in notes[0] and "no kernel for this dtype" in notes[0]
