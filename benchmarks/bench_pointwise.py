"""The memory-bound ops against the eager PyTorch a model holds and torch.compile of it; cases in
llmkernels/bench/cases_pointwise.py.

Targets on the 2-core CPU, fp32 forward+backward:
* apply_rotary on q, k of (4, 16, 2048, 128) >= 3x the Hugging Face rotate_half formulation (eager).
* add_sinusoidal_position_encoding (8, 2048, 1024): reported against eager ``x * scale + table``.
* rms_norm with residual (8, 2048, 1024) >= 2.5x eager (``h = x + r; F.rms_norm(h, ...)``) and
  >= 1.2x torch.compile of it.
* swiglu, packed (8, 1024, 2 x 2816) >= 2x eager ``F.silu(g) * u``, with the bytes autograd keeps
  for the backward reported (eager keeps gate, up and silu(gate); ours only its input).
"""

import pytest

from benchmarks.common import cases, run_case


@pytest.mark.parametrize("spec,provider", cases("rotary") + cases("sinusoidal") + cases("rms_norm") + cases("swiglu"))
def test_pointwise(benchmark, spec, provider):
    run_case(benchmark, spec, provider)
