"""Cross-entropy forward+backward against F.cross_entropy; cases in llmkernels/bench/cases_losses.py.

Target: N=4096, V=32000 fp32 forward+backward >= 2.5x F.cross_entropy on the 2-core CPU.
Each step makes a fresh (N, V) gradient, as training does; its first touch (~170 ms for 500 MB
here) is part of both contenders' time. With ``inplace_backward=True`` the gradient is written
over the logits instead (no fresh buffer).
"""

import pytest

from benchmarks.common import cases, run_case


@pytest.mark.parametrize("spec,provider", cases("cross_entropy"))
def test_cross_entropy(benchmark, spec, provider):
    run_case(benchmark, spec, provider)
