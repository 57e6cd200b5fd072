"""Attention against F.scaled_dot_product_attention (PyTorch's CPU flash kernel; each backend on
CUDA) and the naive softmax(QK^T)V; cases in llmkernels/bench/cases_attention.py.

Targets, (1, 8, 2048, 64) on the 2-core CPU: fp32 forward >= 0.95x (causal and not),
fp32 forward+backward >= 0.95x; bf16 forward and forward+backward >= 1.5x; peak memory at seq
16384 O(seq) (no seq x seq buffer; fresh process per case); decoding (one query per head against
an 8k GQA cache) >= 1.2x.
"""

import pytest

from benchmarks.common import cases, memory_cases, run_case, run_memory


@pytest.mark.parametrize("spec,provider", cases("attention"))
def test_attention(benchmark, spec, provider):
    run_case(benchmark, spec, provider)


@pytest.mark.parametrize("spec", memory_cases("attention"))
def test_attention_peak_memory(spec):
    run_memory(spec)
