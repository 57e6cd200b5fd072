"""Cross-entropy forward+backward against F.cross_entropy.

Target: N=4096, V=32000 fp32 forward+backward >= 2.5x F.cross_entropy on the 2-core CPU.
Each step makes a fresh (N, V) gradient, as training does; its first touch (~170 ms for 500 MB
here) is part of both contenders' time. With ``inplace_backward=True`` the gradient is written
over the logits instead (no fresh buffer): the logits are then a view of the leaf (in training
they come from the output projection), and every contender's step is the loss and
d(loss)/d(logits) (``autograd.grad``, nothing accumulated). The in-place contender overwrites the
shared logits with gradients, so later rounds run on small values: the per-element cost of the
kernels does not depend on them.
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

    def step(loss_fn, view=False):
        def run():
            source = logits.view_as(logits) if view else logits
            torch.autograd.grad(loss_fn(source, target), logits)

        return run

    ours = step(llmkernels.cross_entropy)
    torch.testing.assert_close(llmkernels.cross_entropy(logits, target), F.cross_entropy(logits, target))
    inplace = step(lambda x, t: llmkernels.cross_entropy(x, t, inplace_backward=True), view=True)
    medians = interleaved_medians({"F.cross_entropy": step(F.cross_entropy), "llmkernels.cross_entropy": ours,
                                   "inplace_backward=True": inplace}, rounds=5)
    backend = llmkernels.backends.resolve("cross_entropy", logits.device, logits.dtype)
    record(
        f"cross_entropy fwd+bwd N={ROWS} V={VOCAB} fp32 [{backend}]",
        {name: medians[name] for name in ("F.cross_entropy", "llmkernels.cross_entropy")}, "llmkernels.cross_entropy",
        target={"F.cross_entropy": 2.5},
    )
    record(
        f"cross_entropy fwd+bwd N={ROWS} V={VOCAB} fp32, inplace_backward=True [{backend}]",
        {"F.cross_entropy": medians["F.cross_entropy"], "inplace_backward=True": medians["inplace_backward=True"]},
        "inplace_backward=True", target={"F.cross_entropy": 2.5},
    )
    benchmark.pedantic(ours, rounds=2, iterations=1)
