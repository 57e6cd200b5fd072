"""Determinism on the cpp backend: every op's forward and backward are bitwise identical run to run
and across thread counts (1 and 2), including the ops whose backward sums across threads' work
(attention's dK/dV over query blocks, the weight gradients of the fused linear losses summed over
row chunks, distillation). Every registered op is covered through llmkernels.tour.cases (which a
test keeps complete), plus attention variants with windows, softcap, ALiBi and packed sequences.
Sizes are large enough that the kernels split the work across both threads."""

import pytest
import torch

import llmkernels
from llmkernels import backends, tour

pytestmark = pytest.mark.skipif(
    "cpp" not in llmkernels.available_backends("cpu", "attention"), reason="llmkernels._C is not built"
)
THREADS = (1, 2, 1, 2)  # run to run at each count, and across counts


def _extra_cases():
    leaf = lambda *shape: torch.randn(*shape, requires_grad=True)  # noqa: E731
    q, k, v = leaf(2, 4, 193, 64), leaf(2, 4, 211, 64), leaf(2, 4, 211, 64)
    packed_q, packed_k, packed_v = leaf(300, 4, 32), leaf(300, 2, 32), leaf(300, 2, 32)
    cu = torch.tensor([0, 7, 150, 300], dtype=torch.int32)
    slopes = torch.rand(4)
    return {
        "attention-window-softcap-alibi": tour._grad_of(
            lambda: llmkernels.attention(q, k, v, window=(64, 0), softcap=30.0, alibi_slopes=slopes), q, k, v
        ),
        "attention-bottom-right": tour._grad_of(lambda: llmkernels.attention(q, k, v, causal=True), q, k, v),
        "attention_varlen": tour._grad_of(
            lambda: llmkernels.attention_varlen(packed_q, packed_k, packed_v, cu, cu, 150, 150, causal=True),
            packed_q, packed_k, packed_v,
        ),
    }


def _all_cases():
    torch.manual_seed(0)
    return {**tour.cases("cpu"), **_extra_cases()}


# Every op with cpp kernels (all of them today; an op without one would have no cpp path to test).
CPP_OPS = [op for op in backends.registered_ops() if "cpp" in backends.implemented_backends(op)]
NAMES = sorted(set(CPP_OPS)) + sorted(_extra_cases())


@pytest.mark.parametrize("name", NAMES)
def test_cpp_is_bitwise_deterministic_across_runs_and_thread_counts(name):
    run = _all_cases()[name]
    previous = torch.get_num_threads()
    results = []
    try:
        for count in THREADS:
            torch.set_num_threads(count)
            with llmkernels.use_backend("cpp"):
                results.append(run())
    finally:
        torch.set_num_threads(previous)
    for count, result in zip(THREADS[1:], results[1:]):
        assert torch.equal(result, results[0]), f"{name}: {count} thread(s) differ from 1 thread"
