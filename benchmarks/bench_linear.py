"""The linear projection (forward and both backward products) against ``F.linear``; cases in
llmkernels/bench/cases_linear.py. On a CPU with AVX2 or AVX-512 the cpp backend runs llmkernels'
packed GEMM in float32 (MKL runs the transposed products below its plain rate); figures in
BENCHMARKS.md."""

import pytest

from benchmarks.common import cases, run_case


@pytest.mark.parametrize("spec,provider", cases("linear"))
def test_linear(benchmark, spec, provider):
    run_case(benchmark, spec, provider)
