"""A tour of the ops: every op on every present CPU backend, checked against the reference and
timed, in one table."""

from __future__ import annotations

import time

import torch

import llmkernels


def _cases():
    q = torch.randn(2, 8, 512, 64)
    k = torch.randn(2, 2, 512, 64)
    cos, sin = llmkernels.rope_cache(512, 64)
    positions = torch.randint(0, 512, (2, 512))
    x = torch.randn(4, 512, 256)
    yield "apply_rotary", lambda: torch.cat([t.flatten() for t in llmkernels.apply_rotary(q, k, cos, sin, positions)])
    yield "rotary_embedding", lambda: llmkernels.rotary_embedding(q, cos[:, :16], sin[:, :16], interleaved=True)
    yield "add_sinusoidal_position_encoding", lambda: llmkernels.add_sinusoidal_position_encoding(x, scale=2.0)
    logits = torch.randn(512, 8000, requires_grad=True)
    target = torch.randint(0, 8000, (512,))

    def loss_and_grad():
        loss = llmkernels.cross_entropy(logits, target, label_smoothing=0.1)
        (grad,) = torch.autograd.grad(loss, logits)
        return torch.cat((loss.reshape(1), grad.flatten()))

    yield "cross_entropy (fwd+bwd)", loss_and_grad


def _time(fn, repeats=10) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run() -> None:
    torch.manual_seed(0)
    llmkernels.info()
    print()
    print(f"{'op':<34} {'backend':<10} {'max |err| vs reference':>24} {'time (ms)':>10} {'speed-up':>9}")
    for op, fn in _cases():
        with llmkernels.use_backend("reference"):
            expected = fn()
        reference_time = None
        for backend in llmkernels.available_backends("cpu", op.split(" ")[0]):
            if backend == "triton":  # the CPU interpreter checks kernels; it does not race them
                continue
            with llmkernels.use_backend(backend):
                error = (fn() - expected).abs().max().item()
                elapsed = _time(fn)
            reference_time = reference_time or elapsed
            print(
                f"{op:<34} {backend:<10} {error:>24.2e} {elapsed * 1e3:>10.2f} {reference_time / elapsed:>8.2f}x"
            )
