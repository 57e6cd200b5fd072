"""The linear projection, forward and backward, against ``F.linear`` (what every model's
``nn.Linear`` runs) at the projections of the GPT ``small`` preset and of issue 11's Llama."""

from __future__ import annotations

import torch
from torch.nn import functional as F

import llmkernels
from llmkernels.bench.case import DTYPES, Case, Spec, builder, family, ours, train_step


@builder
def linear(device, tokens, in_features, out_features, dtype, tiny=False):
    if tiny:
        tokens, in_features, out_features = 16, 24, 40
    torch_dtype = DTYPES[dtype]
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(tokens, in_features, generator=gen, device=device, dtype=torch_dtype).requires_grad_(True)
    weight = (torch.randn(out_features, in_features, generator=gen, device=device, dtype=torch_dtype)
              / in_features**0.5).requires_grad_(True)
    grad = torch.randn(tokens, out_features, generator=gen, device=device, dtype=torch_dtype)
    peer_steps = {"F.linear": train_step([x, weight], lambda: F.linear(x, weight), grad)}

    def check():
        tolerance = dict(rtol=1e-4, atol=1e-4) if torch_dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
        torch.testing.assert_close(llmkernels.linear(x, weight).float(), F.linear(x, weight).float(), **tolerance)

    return Case(op="linear", mode="fwd+bwd", shape=f"M={tokens} K={in_features} N={out_features} {dtype}", size=tokens,
                ours=ours("linear", device, torch_dtype, lambda: train_step([x, weight], lambda: llmkernels.linear(x, weight), grad)),
                peers=peer_steps, floor_flops=6.0 * tokens * in_features * out_features, dtype=dtype, check=check)


@family("linear")
def linear_specs(level: str, device: str) -> list[Spec]:
    if device.startswith("cuda"):
        return [Spec.of("linear", tokens=8192, in_features=4096, out_features=11008, dtype="bf16")]
    # The small GPT's MLP up projection (4 x 512 tokens, 384 -> 2048) and the Llama's (1024, 512 -> 1408).
    return [Spec.of("linear", tokens=2048, in_features=384, out_features=2048, dtype="fp32"),
            Spec.of("linear", tokens=1024, in_features=512, out_features=1408, dtype="fp32")]
