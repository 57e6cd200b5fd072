"""Distillation losses against the plain PyTorch path (and liger-kernel's fused linear JSD, when
importable; never installed by this repository); cases in llmkernels/bench/cases_distillation.py.

Targets, fp32 forward+backward on the 2-core CPU, ratios from one run:
* distillation_loss, N=4096, V=32000, T=2 (T^2 applied, mean over rows), beta 0 and 0.5: >= 3x the
  plain path (F.kl_div of log_softmaxes for beta 0, the same statement of the generalised JSD).
* linear_distillation_loss, N=2048, Hs=512, Ht=768, V=32768, beta 0.5, T=2: time below the plain
  path (two matmuls, the loss above) and Liger's LigerFusedLinearJSDLoss; peak memory <= 0.15x the
  plain path's and below Liger's (peak RSS added by one step, each case in a fresh process).
* linear_topk_distillation_loss, k=64, same size: faster than linear_distillation_loss, memory no higher.
"""

import pytest

from benchmarks.common import cases, run_case


@pytest.mark.parametrize("spec,provider", cases("distillation"))
def test_distillation(benchmark, spec, provider):
    run_case(benchmark, spec, provider)
