"""Fused linear cross-entropy against the plain path and torch's F.linear_cross_entropy (reference
path and chunked); cases in llmkernels/bench/cases_losses.py.

Targets, N=2048, H=512, V=32768 fp32 forward+backward on the 2-core CPU:
time <= 1.1x the plain `F.cross_entropy(input @ W.T, target)`, >= 2.5x faster than torch's chunked
`F.linear_cross_entropy(..., options=LinearCrossEntropyOptions())`; peak memory <= 0.25x the plain
path's and below torch's chunked path's (peak RSS, each case in a fresh process).
"""

import pytest

from benchmarks.common import cases, run_case


@pytest.mark.parametrize("spec,provider", cases("linear_cross_entropy"))
def test_linear_cross_entropy(benchmark, spec, provider):
    run_case(benchmark, spec, provider)
