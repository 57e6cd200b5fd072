"""SwiGLU forward+backward against eager ``F.silu(gate) * up`` and torch.compile of it.

Target (issue 13): swiglu f+b at (8, 1024, 2816) fp32 >= 2x eager, with the memory autograd keeps
for the backward reported: eager keeps gate, up and silu(gate); the fused op keeps only its
input (sigmoid is recomputed).
"""

import pytest
import torch
import torch.nn.functional as F

import llmkernels
from benchmarks.common import RESULTS, interleaved_medians, record

BATCH, SEQ, HIDDEN = 8, 1024, 2816


def eager_swiglu(gate_up):
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


def fused_swiglu(gate_up):
    return llmkernels.swiglu(gate_up)


def saved_megabytes(fn, gate_up) -> float:
    """Bytes autograd keeps for the backward of fn(gate_up): each saved tensor's storage once
    (gate and up are views of gate_up's storage; a new tensor such as silu(gate) adds its own)."""
    storages = {}

    def pack(t):
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(gate_up)
    del out
    return sum(storages.values()) / 2**20


@pytest.fixture(scope="module")
def tensors():
    torch.manual_seed(0)
    gate_up = torch.randn(BATCH, SEQ, 2 * HIDDEN, requires_grad=True)
    return gate_up, torch.randn(BATCH, SEQ, HIDDEN)


def _fwd_bwd(fn, gate_up, grad):
    def step():
        gate_up.grad = None  # a training step gets a fresh gradient
        fn(gate_up).backward(grad)

    return step


def test_swiglu_fwd_bwd_vs_eager(benchmark, tensors):
    gate_up, grad = tensors
    compiled = torch.compile(eager_swiglu)
    torch.testing.assert_close(fused_swiglu(gate_up), eager_swiglu(gate_up), rtol=1e-5, atol=1e-5)
    ours = _fwd_bwd(fused_swiglu, gate_up, grad)
    contenders = {
        "eager F.silu(g) * u": _fwd_bwd(eager_swiglu, gate_up, grad),
        "llmkernels.swiglu": ours,
        "torch.compile(F.silu(g) * u)": _fwd_bwd(compiled, gate_up, grad),
    }
    medians = interleaved_medians(contenders, rounds=7)
    backend = llmkernels.backends.resolve("swiglu", gate_up.device, gate_up.dtype)
    record(
        f"swiglu fwd+bwd, packed gate_up {BATCH}x{SEQ}x{2 * HIDDEN} fp32 [{backend}]",
        medians, "llmkernels.swiglu", target={"eager F.silu(g) * u": 2.0},
    )
    saved = {
        "eager F.silu(g) * u": saved_megabytes(eager_swiglu, gate_up),
        "llmkernels.swiglu": saved_megabytes(fused_swiglu, gate_up),
        "torch.compile(F.silu(g) * u)": saved_megabytes(compiled, gate_up),
    }
    RESULTS.append({
        "case": f"swiglu: tensors autograd saves for the backward, {BATCH}x{SEQ}x{2 * HIDDEN} fp32 "
                f"(saved by ours vs eager: {saved['eager F.silu(g) * u'] - saved['llmkernels.swiglu']:.1f} MB)",
        "ours": "llmkernels.swiglu", "medians_s": {}, "target": {}, "speedup_vs": {},
        "memory_mb": {name: round(mb, 1) for name, mb in saved.items()},
    })
    benchmark.pedantic(ours, rounds=3, iterations=1)
