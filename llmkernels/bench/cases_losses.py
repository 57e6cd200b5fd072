"""Cross-entropy cases: ours (and its in-place backward) against F.cross_entropy, and the fused
linear cross-entropy against the plain path and torch's F.linear_cross_entropy (reference path and
chunked, when this torch has it). Shapes as BENCHMARKS.md quotes them.

Every contender's step is the loss and d(loss)/d(input): the cross-entropy step asks autograd for
the logits' gradient (``autograd.grad``), because the in-place backward writes it over the logits,
which must then be a view of the leaf (in training they come from the output projection).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import llmkernels
from llmkernels.bench import peers
from llmkernels.bench.case import DTYPES, Case, Spec, builder, family, ours, train_step


@builder
def cross_entropy(device, n, v, dtype, compiled=False, tiny=False):
    if tiny:
        n, v = 64, 1000
    torch_dtype = DTYPES[dtype]
    gen = torch.Generator(device=device).manual_seed(0)
    logits = torch.randn(n, v, generator=gen, device=device, dtype=torch_dtype).requires_grad_(True)
    target = torch.randint(0, v, (n,), generator=gen, device=device)

    def step(loss_fn, view=False):
        def run():
            source = logits.view_as(logits) if view else logits
            torch.autograd.grad(loss_fn(source, target), logits)

        return run

    peer_steps = {"F.cross_entropy": step(F.cross_entropy)}
    if compiled:
        peer_steps["torch.compile(F.cross_entropy)"] = step(torch.compile(F.cross_entropy))
    optional = ()
    liger_ce = peers.liger("LigerCrossEntropyLoss") if device.startswith("cuda") else None
    if liger_ce is not None:
        peer_steps["liger LigerCrossEntropyLoss"] = step(liger_ce())
        optional = ("liger LigerCrossEntropyLoss",)
    mine = ours("cross_entropy", device, torch_dtype, lambda: step(llmkernels.cross_entropy))
    # The in-place contender overwrites the shared logits with gradients, so later rounds run on
    # small values: the per-element cost of the kernels does not depend on them.
    mine.update(ours("cross_entropy", device, torch_dtype,
                     lambda: step(lambda x, t: llmkernels.cross_entropy(x, t, inplace_backward=True), view=True),
                     suffix=" inplace_backward"))

    def check():
        tol = 1e-5 if torch_dtype == torch.float32 else 2e-2
        torch.testing.assert_close(llmkernels.cross_entropy(logits, target).float(),
                                   F.cross_entropy(logits.float(), target), rtol=tol, atol=tol)

    return Case(op="cross_entropy", mode="fwd+bwd", shape=f"N={n} V={v} {dtype}", size=v, ours=mine, peers=peer_steps,
                targets={"F.cross_entropy": 2.5} if not device.startswith("cuda") else {},
                floor_bytes=2.0 * n * v * logits.element_size(), dtype=dtype, check=check, optional=optional)


@builder
def linear_cross_entropy(device, n, hidden, v, dtype, memory=False, tiny=False):
    if tiny:
        n, hidden, v = 64, 32, 1000
    torch_dtype = DTYPES[dtype]
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(n, hidden, generator=gen, device=device, dtype=torch_dtype).requires_grad_(True)
    w = (torch.randn(v, hidden, generator=gen, device=device, dtype=torch_dtype) / hidden**0.5).requires_grad_(True)
    t = torch.randint(0, v, (n,), generator=gen, device=device)
    peer_steps = {"plain F.cross_entropy(x @ W.T)": train_step([x, w], lambda: F.cross_entropy(x @ w.T, t))}
    targets = {"plain F.cross_entropy(x @ W.T)": 0.91}
    if hasattr(F, "linear_cross_entropy"):
        peer_steps["F.linear_cross_entropy"] = train_step([x, w], lambda: F.linear_cross_entropy(x, w, t))
        peer_steps["F.linear_cross_entropy chunked"] = train_step(
            [x, w], lambda: F.linear_cross_entropy(x, w, t, options=torch.nn.LinearCrossEntropyOptions()))
        targets["F.linear_cross_entropy chunked"] = 2.5
    optional = ()
    liger_flce = peers.liger("LigerFusedLinearCrossEntropyLoss") if device.startswith("cuda") else None
    if liger_flce is not None:
        loss = liger_flce()  # its forward takes the weight first
        peer_steps["liger LigerFusedLinearCrossEntropyLoss"] = train_step([x, w], lambda: loss(w, x, t))
        optional = ("liger LigerFusedLinearCrossEntropyLoss",)
    mine = ours("linear_cross_entropy", device, torch_dtype,
                lambda: train_step([x, w], lambda: llmkernels.linear_cross_entropy(x, w, t)))

    def check():
        tol = 1e-5 if torch_dtype == torch.float32 else 2e-2
        torch.testing.assert_close(llmkernels.linear_cross_entropy(x, w, t).float(),
                                   F.cross_entropy(x.float() @ w.float().T, t), rtol=tol, atol=tol)

    return Case(op="linear_cross_entropy", mode="fwd+bwd", shape=f"N={n} H={hidden} V={v} {dtype}", size=v, ours=mine,
                peers=peer_steps, targets=targets if not device.startswith("cuda") else {},
                floor_flops=6.0 * n * hidden * v, dtype=dtype, check=check, optional=optional, memory=memory)


def _vocab_sweep():
    return (8192, 16384, 32768, 65536, 131072)


@family("cross_entropy")
def cross_entropy_specs(level: str, device: str) -> list[Spec]:
    dtypes = ("bf16", "fp32") if device.startswith("cuda") else ("fp32",)
    vocabs = _vocab_sweep() if level == "sweep" else (32000,) if not device.startswith("cuda") else (32768, 131072)
    # torch.compile's fused loss on a GPU in the full run (its compilation does not fit the quick check's minutes).
    compiled = device.startswith("cuda") and level != "quick"
    return [Spec.of("cross_entropy", n=4096, v=v, dtype=dtype, compiled=compiled) for dtype in dtypes for v in vocabs]


@family("linear_cross_entropy")
def linear_cross_entropy_specs(level: str, device: str) -> list[Spec]:
    if device.startswith("cuda"):
        # Memory in fresh processes costs a CUDA start-up per contender: not in the quick GPU check.
        return [Spec.of("linear_cross_entropy", n=8192, hidden=4096, v=v, dtype="bf16", memory=level != "quick")
                for v in (32768, 131072)]
    vocabs = _vocab_sweep() if level == "sweep" else (32768,)
    return [Spec.of("linear_cross_entropy", n=2048, hidden=512, v=v, dtype="fp32", memory=True)
            for v in vocabs]
