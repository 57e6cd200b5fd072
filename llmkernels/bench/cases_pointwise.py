"""Memory-bound cases: rotary and sinusoidal position encodings, rms_norm with the fused residual
add and swiglu, against the eager PyTorch a model would hold and torch.compile of it (and
liger-kernel's kernels on a GPU, when importable). Shapes as BENCHMARKS.md quotes them.
"""

from __future__ import annotations

import torch

import llmkernels
from llmkernels.bench import peers
from llmkernels.bench.case import DTYPES, Case, Spec, builder, family, ours, train_step

EPS = 1e-6


def _gen(device):
    return torch.Generator(device=device).manual_seed(0)


def _tolerance(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)


@builder
def apply_rotary(device, b, h, s, d, dtype, compiled=True, tiny=False):
    if tiny:
        b, h, s, d = 1, 2, 32, 16
    torch_dtype, gen = DTYPES[dtype], _gen(device)
    q, k = (torch.randn(b, h, s, d, generator=gen, device=device, dtype=torch_dtype).requires_grad_(True) for _ in range(2))
    grad_q, grad_k = (torch.randn(b, h, s, d, generator=gen, device=device, dtype=torch_dtype) for _ in range(2))
    cos, sin = llmkernels.rope_cache(s, d, device=device)
    hf_cos = torch.cat((cos, cos), -1).to(torch_dtype).expand(b, s, d)
    hf_sin = torch.cat((sin, sin), -1).to(torch_dtype).expand(b, s, d)

    def step(rotate):
        def run():
            q.grad = k.grad = None  # a training step gets fresh gradient tensors
            torch.autograd.backward(rotate(), (grad_q, grad_k))

        return run

    peer_steps = {"HF rotate_half eager": step(lambda: peers.hf_apply_rotary_pos_emb(q, k, hf_cos, hf_sin))}
    if compiled:
        hf_compiled = torch.compile(peers.hf_apply_rotary_pos_emb)
        peer_steps["HF rotate_half compiled"] = step(lambda: hf_compiled(q, k, hf_cos, hf_sin))
    liger = peers.liger("liger_rotary_pos_emb") if device.startswith("cuda") else None
    if liger is not None:
        peer_steps["liger rotary_pos_emb"] = step(lambda: liger(q, k, hf_cos, hf_sin))

    def check():
        for got, want in zip(llmkernels.apply_rotary(q, k, cos, sin), peers.hf_apply_rotary_pos_emb(q, k, hf_cos, hf_sin)):
            torch.testing.assert_close(got.float(), want.float(), **_tolerance(torch_dtype))

    return Case(op="rotary", mode="fwd+bwd", shape=f"B={b} H={h} S={s} D={d} {dtype}", size=s,
                ours=ours("apply_rotary", device, torch_dtype, lambda: step(lambda: llmkernels.apply_rotary(q, k, cos, sin))),
                peers=peer_steps, targets={"HF rotate_half eager": 3.0} if not device.startswith("cuda") else {},
                floor_bytes=4.0 * 2 * q.numel() * q.element_size(), dtype=dtype, check=check,
                optional=("liger rotary_pos_emb",))


@builder
def sinusoidal(device, b, s, d, dtype, tiny=False):
    if tiny:
        b, s, d = 2, 32, 16
    torch_dtype, gen = DTYPES[dtype], _gen(device)
    x = torch.randn(b, s, d, generator=gen, device=device, dtype=torch_dtype).requires_grad_(True)
    grad = torch.randn(b, s, d, generator=gen, device=device, dtype=torch_dtype)
    table = llmkernels.sinusoidal_table(s, d, device=device).to(torch_dtype)

    def check():
        torch.testing.assert_close(llmkernels.add_sinusoidal_position_encoding(x, scale=2.0).float(),
                                   (x * 2.0 + table).float(), **_tolerance(torch_dtype))

    return Case(op="sinusoidal", mode="fwd+bwd", shape=f"B={b} S={s} D={d} {dtype}", size=s,
                ours=ours("add_sinusoidal_position_encoding", device, torch_dtype,
                          lambda: train_step([x], lambda: llmkernels.add_sinusoidal_position_encoding(x, scale=2.0), grad)),
                peers={"eager x*scale + table": train_step([x], lambda: x * 2.0 + table, grad)},
                floor_bytes=4.0 * x.numel() * x.element_size(), dtype=dtype, check=check)


@builder
def rms_norm(device, shape, dtype, compiled=True, tiny=False):
    shape = (2, 16, 64) if tiny else tuple(shape)
    torch_dtype, gen = DTYPES[dtype], _gen(device)
    x, r = (torch.randn(*shape, generator=gen, device=device, dtype=torch_dtype).requires_grad_(True) for _ in range(2))
    w = (1.0 + 0.1 * torch.randn(shape[-1], generator=gen, device=device, dtype=torch_dtype)).requires_grad_(True)

    def step(fn):
        def loss():
            y, h = fn()
            return y.sum() + h.sum()

        return train_step([x, r, w], loss)

    eager = lambda: peers.eager_add_rms_norm(x, r, w, EPS)  # noqa: E731
    peer_steps = {"eager x + r; F.rms_norm": step(eager)}
    targets = {"eager x + r; F.rms_norm": 2.5}
    if compiled:
        fn = torch.compile(peers.eager_add_rms_norm)
        peer_steps["torch.compile(x + r; F.rms_norm)"] = step(lambda: fn(x, r, w, EPS))
        targets["torch.compile(x + r; F.rms_norm)"] = 1.2
    liger = peers.liger("LigerRMSNormFunction") if device.startswith("cuda") else None
    if liger is not None:
        def liger_norm():
            h = x + r
            return liger.apply(h, w, EPS), h

        peer_steps["liger RMSNorm (after x + r)"] = step(liger_norm)

    def check():
        for got, want in zip(llmkernels.rms_norm(x, w, EPS, residual=r), eager()):
            torch.testing.assert_close(got.float(), want.float(), **_tolerance(torch_dtype))

    return Case(op="rms_norm", mode="fwd+bwd", shape=f"B={shape[0]} S={shape[1]} D={shape[2]} residual {dtype}", size=shape[-2],
                ours=ours("rms_norm", device, torch_dtype, lambda: step(lambda: llmkernels.rms_norm(x, w, EPS, residual=r))),
                peers=peer_steps, targets=targets if not device.startswith("cuda") else {},
                floor_bytes=8.0 * x.numel() * x.element_size(), dtype=dtype, check=check,
                optional=("liger RMSNorm (after x + r)",))


def saved_megabytes(fn, gate_up) -> float:
    """Bytes autograd keeps for the backward of fn(gate_up): each saved tensor's storage once
    (gate and up are views of gate_up's storage; a new tensor such as silu(gate) adds its own)."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(gate_up)
    del out
    return sum(storages.values()) / 2**20


@builder
def swiglu(device, b, s, hidden, dtype, compiled=True, tiny=False):
    if tiny:
        b, s, hidden = 2, 16, 32
    torch_dtype, gen = DTYPES[dtype], _gen(device)
    gate_up = torch.randn(b, s, 2 * hidden, generator=gen, device=device, dtype=torch_dtype).requires_grad_(True)
    grad = torch.randn(b, s, hidden, generator=gen, device=device, dtype=torch_dtype)
    fns = {"eager F.silu(g) * u": peers.eager_swiglu}
    targets = {"eager F.silu(g) * u": 2.0}
    if compiled:
        fns["torch.compile(F.silu(g) * u)"] = torch.compile(peers.eager_swiglu)
    liger = peers.liger("LigerSiLUMulFunction") if device.startswith("cuda") else None
    if liger is not None:
        fns["liger SiLUMul"] = lambda t: liger.apply(*t.chunk(2, dim=-1))
    peer_steps = {name: train_step([gate_up], lambda fn=fn: fn(gate_up), grad) for name, fn in fns.items()}
    mine = ours("swiglu", device, torch_dtype, lambda: train_step([gate_up], lambda: llmkernels.swiglu(gate_up), grad))

    def check():
        torch.testing.assert_close(llmkernels.swiglu(gate_up).float(), peers.eager_swiglu(gate_up).float(),
                                   **_tolerance(torch_dtype))

    def saved():
        rows = [(name, "saved_mb", saved_megabytes(fn, gate_up)) for name, fn in fns.items()]
        return rows + [(name, "saved_mb", saved_megabytes(llmkernels.swiglu, gate_up)) for name in mine]

    return Case(op="swiglu", mode="fwd+bwd", shape=f"B={b} S={s} 2H={2 * hidden} {dtype}", size=s,
                ours=mine, peers=peer_steps, targets=targets if not device.startswith("cuda") else {},
                floor_bytes=8.0 * grad.numel() * grad.element_size(), dtype=dtype, check=check,
                optional=("liger SiLUMul",), extra_rows=saved)


@family("rotary")
def rotary_specs(level: str, device: str) -> list[Spec]:
    if device.startswith("cuda"):
        return [Spec.of("apply_rotary", b=8, h=32, s=4096, d=128, dtype=dtype) for dtype in ("bf16", "fp32")]
    seqs = (512, 1024, 2048, 4096, 8192) if level == "sweep" else (2048,)
    return [Spec.of("apply_rotary", b=4, h=16, s=s, d=128, dtype="fp32", compiled=level != "sweep") for s in seqs]


@family("sinusoidal")
def sinusoidal_specs(level: str, device: str) -> list[Spec]:
    if device.startswith("cuda"):
        return [Spec.of("sinusoidal", b=16, s=4096, d=2048, dtype=dtype) for dtype in ("bf16", "fp32")]
    return [Spec.of("sinusoidal", b=8, s=2048, d=1024, dtype="fp32")]


@family("rms_norm")
def rms_norm_specs(level: str, device: str) -> list[Spec]:
    if device.startswith("cuda"):
        return [Spec.of("rms_norm", shape=[8, 2048, 4096], dtype=dtype) for dtype in ("bf16", "fp32")]
    return [Spec.of("rms_norm", shape=[8, 2048, 1024], dtype="fp32")]


@family("swiglu")
def swiglu_specs(level: str, device: str) -> list[Spec]:
    if device.startswith("cuda"):
        return [Spec.of("swiglu", b=8, s=2048, hidden=5632, dtype=dtype) for dtype in ("bf16", "fp32")]
    return [Spec.of("swiglu", b=8, s=1024, hidden=2816, dtype="fp32")]
