"""Cross-entropy forward+backward against F.cross_entropy.

Target: N=4096, V=32000 fp32 forward+backward >= 2.5x F.cross_entropy on the 2-core CPU.
Each step makes a fresh (N, V) gradient, as training does; its first touch (~170 ms for 500 MB
here) is part of both contenders' time.
"""

import torch
import torch.nn.functional as F

import llmkernels
from benchmarks.common import interleaved_medians, record

ROWS, VOCAB = 4096, 32000


def test_cross_entropy_fwd_bwd_vs_torch(benchmark):
    torch.manual_seed(0)
    logits = torch.randn(ROWS, VOCAB, requires_grad=True)
    target = torch.randint(0, VOCAB, (ROWS,))

    def step(loss_fn):
        def run():
            logits.grad = None
            loss_fn(logits, target).backward()

        return run

    ours = step(llmkernels.cross_entropy)
    torch.testing.assert_close(llmkernels.cross_entropy(logits, target), F.cross_entropy(logits, target))
    medians = interleaved_medians({"F.cross_entropy": step(F.cross_entropy), "llmkernels.cross_entropy": ours}, rounds=5)
    backend = llmkernels.backends.resolve("cross_entropy", logits.device, logits.dtype)
    record(
        f"cross_entropy fwd+bwd N={ROWS} V={VOCAB} fp32 [{backend}]", medians, "llmkernels.cross_entropy",
        target={"F.cross_entropy": 2.5},
    )
    benchmark.pedantic(ours, rounds=2, iterations=1)
