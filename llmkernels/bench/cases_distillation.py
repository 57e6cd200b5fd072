"""Distillation cases: the loss on logits against the plain PyTorch statement, and the fused linear
losses (full teacher and top-k) against the plain path and liger-kernel's fused linear JSD (when
importable). Shapes as BENCHMARKS.md quotes them: N=4096 V=32000 T=2; N=2048 Hs=512 Ht=768
V=32768 beta 0.5 T=2, k=64.
"""

from __future__ import annotations

import torch

import llmkernels
from llmkernels.bench import peers
from llmkernels.bench.case import DTYPES, Case, Spec, builder, family, ours, train_step

TEMPERATURE, TOPK = 2.0, 64


@builder
def distillation_loss(device, n, v, beta, dtype, compiled=False, tiny=False):
    if tiny:
        n, v = 64, 1000
    torch_dtype = DTYPES[dtype]
    gen = torch.Generator(device=device).manual_seed(0)
    student = torch.randn(n, v, generator=gen, device=device, dtype=torch_dtype).requires_grad_(True)
    teacher = torch.randn(n, v, generator=gen, device=device, dtype=torch_dtype)
    ours_loss = lambda: llmkernels.distillation_loss(student, teacher, temperature=TEMPERATURE, beta=beta)  # noqa: E731
    plain = lambda: peers.plain_distillation_loss(student, teacher, beta, TEMPERATURE)  # noqa: E731

    peer_steps = {"plain PyTorch": train_step([student], plain)}
    if compiled:
        plain_compiled = torch.compile(peers.plain_distillation_loss)
        peer_steps["torch.compile(plain PyTorch)"] = train_step(
            [student], lambda: plain_compiled(student, teacher, beta, TEMPERATURE))

    def check():
        tol = (1e-4, 1e-5) if torch_dtype == torch.float32 else (2e-2, 2e-2)
        want = peers.plain_distillation_loss(student.float(), teacher.float(), beta, TEMPERATURE)  # bf16 too rough to judge by
        torch.testing.assert_close(ours_loss().float(), want, rtol=tol[0], atol=tol[1])

    return Case(op="distillation_loss", mode="fwd+bwd", shape=f"N={n} V={v} T={TEMPERATURE} beta={beta} {dtype}", size=v,
                ours=ours("distillation_loss", device, torch_dtype, lambda: train_step([student], ours_loss)),
                peers=peer_steps,
                targets={"plain PyTorch": 3.0} if not device.startswith("cuda") else {},
                floor_bytes=3.0 * n * v * student.element_size(), dtype=dtype, check=check)


def _liger_jsd(beta):
    """Liger's chunked-PyTorch fused linear JSD (torch.compile'd by default; it runs on a CPU), soft
    part only, to match the other contenders."""
    cls = peers.liger("LigerFusedLinearJSDLoss")
    if cls is None:
        return None
    return cls(weight_hard_loss=0.0, weight_soft_loss=1.0, beta=beta, temperature=TEMPERATURE)


@builder
def linear_distillation_loss(device, n, hs, ht, v, dtype, beta=0.5, memory=True, tiny=False):
    if tiny:
        n, hs, ht, v = 64, 32, 48, 1000
    torch_dtype = DTYPES[dtype]
    gen = torch.Generator(device=device).manual_seed(0)
    s_x = torch.randn(n, hs, generator=gen, device=device, dtype=torch_dtype).requires_grad_(True)
    s_w = (torch.randn(v, hs, generator=gen, device=device, dtype=torch_dtype) / hs**0.5).requires_grad_(True)
    t_x = torch.randn(n, ht, generator=gen, device=device, dtype=torch_dtype)
    t_w = torch.randn(v, ht, generator=gen, device=device, dtype=torch_dtype) / ht**0.5
    k = min(TOPK, v)
    ids, logprobs = llmkernels.linear_topk_logprobs(t_x, t_w, k, temperature=TEMPERATURE)
    leaves = [s_x, s_w]
    plain = lambda: peers.plain_distillation_loss(s_x @ s_w.T, t_x @ t_w.T, beta, TEMPERATURE)  # noqa: E731
    full = lambda: llmkernels.linear_distillation_loss(s_x, s_w, t_x, t_w, temperature=TEMPERATURE, beta=beta)  # noqa: E731
    peer_steps = {"plain PyTorch": train_step(leaves, plain)}
    liger = _liger_jsd(beta)
    if liger is not None:
        # Its hard part is weighted 0 (the other contenders have none); it still wants labels.
        labels = torch.randint(0, v, (n,), generator=gen, device=device)
        peer_steps["liger LigerFusedLinearJSDLoss"] = train_step(leaves, lambda: liger(s_x, s_w, t_x, t_w, labels))
    mine = ours("linear_distillation_loss", device, torch_dtype, lambda: train_step(leaves, full))
    topk = ours("linear_topk_distillation_loss", device, torch_dtype, lambda: train_step(
        leaves, lambda: llmkernels.linear_topk_distillation_loss(s_x, s_w, ids, logprobs, temperature=TEMPERATURE, beta=beta)),
        suffix=f" top-k k={k}")

    def check():
        tol = (1e-4, 1e-5) if torch_dtype == torch.float32 else (2e-2, 2e-2)
        want = peers.plain_distillation_loss(s_x.float() @ s_w.float().T, t_x.float() @ t_w.float().T, beta, TEMPERATURE)
        torch.testing.assert_close(full().float(), want, rtol=tol[0], atol=tol[1])

    cpu = not device.startswith("cuda")
    student_flops = 6.0 * n * hs * v
    return Case(
        op="linear_distillation_loss", mode="fwd+bwd", shape=f"N={n} Hs={hs} Ht={ht} V={v} T={TEMPERATURE} beta={beta} {dtype}",
        size=v, ours={**mine, **topk}, peers=peer_steps,
        targets={name: 1.0 for name in peer_steps} if cpu else {},
        # top-k needs no teacher pass and must beat the full-teacher loss on the same backend.
        pairs=[(t, m, 1.0 if cpu else None) for t, m in zip(topk, mine)],
        floor_flops=student_flops + 2.0 * n * ht * v, floor_for={name: (0.0, student_flops) for name in topk},
        dtype=dtype, check=check, optional=tuple(n for n in peer_steps if n.startswith("liger")),
        memory=memory, warmup_full=True,
    )


@family("distillation")
def specs(level: str, device: str) -> list[Spec]:
    if device.startswith("cuda"):
        return ([Spec.of("distillation_loss", n=8192, v=v, beta=beta, dtype="bf16", compiled=level != "quick")
                 for v in (32768, 131072) for beta in (0.0, 0.5)]
                + [Spec.of("linear_distillation_loss", n=8192, hs=2048, ht=4096, v=v, dtype="bf16", memory=level != "quick")
                   for v in (32768, 131072)])
    if level == "sweep":
        return [Spec.of("distillation_loss", n=4096, v=v, beta=0.5, dtype="fp32") for v in (8192, 16384, 32768, 65536, 131072)]
    return ([Spec.of("distillation_loss", n=4096, v=32000, beta=beta, dtype="fp32") for beta in (0.0, 0.5)]
            + [Spec.of("linear_distillation_loss", n=2048, hs=512, ht=768, v=32768, dtype="fp32")])
