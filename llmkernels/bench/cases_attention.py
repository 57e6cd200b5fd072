"""Attention cases: ours against SDPA (each backend the device has) and the naive softmax(QK^T)V.

The CPU shapes are the ones BENCHMARKS.md has quoted since the first run ((1, 8, 2048, 64), the
decode step against an 8k GQA cache, peak memory at seq 4k and 16k), so figures stay comparable.
On CUDA: bf16, head_dim 64 and 128, seq 1k-16k at 16k tokens per batch and a model width of 2048
(FlashAttention's own benchmark layout), causal and not, forward and forward+backward.
"""

from __future__ import annotations

import torch

import llmkernels
from llmkernels.bench import peers
from llmkernels.bench.case import DTYPES, Case, Spec, builder, family, forward_step, ours, train_step

NAIVE_MAX_SEQ = 4096  # the naive peer keeps (b, h, s, s) scores: past this it only measures the allocator


@builder
def attention(device, b, h, s, d, dtype, causal, mode, kv=None, q_len=None, memory=False, tiny=False):
    if tiny:
        b, h, s, d, kv = 1, 2, 64, 16, (1 if kv else None)
    kv = kv or h
    sq = 1 if q_len else s
    torch_dtype = DTYPES[dtype]
    gen = torch.Generator(device=device).manual_seed(0)
    backward = mode == "fwd+bwd"

    def leaf(*shape):
        return torch.randn(*shape, generator=gen, device=device, dtype=torch_dtype).requires_grad_(backward)

    q, k, v = leaf(b, h, sq, d), leaf(b, kv, s, d), leaf(b, kv, s, d)
    grad = torch.randn(b, h, sq, d, generator=gen, device=device, dtype=torch_dtype)
    gqa = kv != h

    def step(fn):
        return (lambda: train_step([q, k, v], fn, grad)) if backward else (lambda: forward_step(fn))

    peer_steps, optional = {}, []
    for name, backend in peers.sdpa_backends(device).items():
        peer_steps[name] = step(lambda backend=backend: peers.sdpa(q, k, v, causal and not q_len, backend, gqa))()
        if backend is not None:
            optional.append(name)  # a backend may not serve this dtype or head_dim on this card
    if not gqa and s <= NAIVE_MAX_SEQ and not memory:
        peer_steps["naive softmax(QK^T)V"] = step(lambda: peers.naive_attention(q, k, v, causal))()
    mine = ours("attention", device, torch_dtype, step(lambda: llmkernels.attention(q, k, v, causal=causal)))

    def check():
        with torch.no_grad():
            tol = 1e-4 if torch_dtype == torch.float32 else 3e-2
            want = peers.sdpa(q, k, v, causal and not q_len, None, gqa)
            for name in mine:
                with llmkernels.use_backend(name[len("llmkernels["):-1]):
                    got = llmkernels.attention(q, k, v, causal=causal)
                torch.testing.assert_close(got.float(), want.float(), rtol=tol, atol=tol)

    pairs = sq * s * (0.5 if causal and not q_len else 1.0)
    fwd_flops = 4.0 * b * h * pairs * d
    elt = q.element_size()
    tensors = (q.numel() * 2 + k.numel() * 2) * elt  # q, out, k, v
    if q_len:
        shape = f"B={b} H={h} Hkv={kv} Sq=1 S={s} D={d} {dtype}"
    else:
        shape = f"B={b} H={h} S={s} D={d} {'causal' if causal else 'full'} {dtype}"
    # The CPU targets of the attention issues; on a GPU the table reports, it does not judge.
    targets = {} if device.startswith("cuda") else {"SDPA": 1.2 if q_len else {"fp32": 0.95, "bf16": 1.5}[dtype]}
    return Case(
        op="attention", mode="decode" if q_len else mode, shape=shape, size=s, ours=mine, peers=peer_steps,
        targets=targets,
        floor_bytes=tensors * (3 if backward else 1), floor_flops=fwd_flops * (3.5 if backward else 1.0), dtype=dtype,
        check=None if memory else check, optional=tuple(optional), memory=memory, timed=not memory,
        rounds=15 if q_len else 5,
    )


@family("attention")
def specs(level: str, device: str) -> list[Spec]:
    if device.startswith("cuda"):
        seqs = (1024, 2048, 4096, 8192, 16384) if level != "quick" else (1024, 4096, 16384)
        return [Spec.of("attention", b=16384 // s, h=2048 // d, s=s, d=d, dtype="bf16", causal=causal, mode=mode)
                for d in (64, 128) for causal in (False, True) for mode in ("fwd", "fwd+bwd") for s in seqs]
    if level == "sweep":
        return [Spec.of("attention", b=1, h=8, s=s, d=64, dtype=dtype, causal=True, mode="fwd+bwd")
                for dtype in ("fp32", "bf16") for s in (512, 1024, 2048, 4096, 8192, 16384)]
    cases = [Spec.of("attention", b=1, h=8, s=2048, d=64, dtype=dtype, causal=causal, mode=mode)
             for dtype in ("fp32", "bf16") for causal in (False, True) for mode in ("fwd", "fwd+bwd")]
    cases += [Spec.of("attention", b=1, h=32, s=8192, d=128, kv=8, q_len=1, dtype=dtype, causal=True, mode="fwd")
              for dtype in ("fp32", "bf16")]
    cases += [Spec.of("attention", b=1, h=8, s=s, d=64, dtype="fp32", causal=True, mode="fwd+bwd", memory=True)
              for s in (4096, 16384)]
    return cases
