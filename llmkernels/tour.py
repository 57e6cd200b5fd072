"""A tour of the ops: every registered op on every backend present, checked against the reference
and timed, one line per op and backend."""

from __future__ import annotations

import time

import torch

import llmkernels
from llmkernels import backends


def _flat(*tensors) -> torch.Tensor:
    return torch.cat([t.detach().double().flatten() for t in tensors])


def _grad_of(loss_fn, *leaves):
    """The op's forward and backward in one vector: outputs, then the gradients of ``leaves``."""
    def run():
        out = loss_fn()
        outputs = out if isinstance(out, tuple) else (out,)
        total = sum((o.double() * torch.linspace(0.5, 1.5, o.numel(), dtype=torch.float64).reshape(o.shape)).sum() for o in outputs)
        grads = torch.autograd.grad(total, leaves) if leaves else ()  # no leaves: a forward-only op
        return _flat(*outputs, *grads)
    return run


def cases(device: str, seq: int = 256, vocab: int = 8000):
    """op name -> a function running it (forward and backward) that returns one float64 vector."""
    leaf = lambda *shape: torch.randn(*shape, device=device, requires_grad=True)  # noqa: E731
    q, k, v = leaf(2, 8, seq, 64), leaf(2, 2, seq, 64), leaf(2, 2, seq, 64)
    cos, sin = llmkernels.rope_cache(seq, 64, device=device)
    positions = torch.randint(0, seq, (2, seq), device=device)
    x = leaf(4, seq, 256)
    norm_weight = leaf(256)
    projection, projection_bias = leaf(320, 256), leaf(320)
    logits, target = leaf(seq, vocab), torch.randint(0, vocab, (seq,), device=device)
    hidden, lm_head = leaf(seq, 128), leaf(vocab, 128)
    teacher_logits = torch.randn(seq, vocab, device=device)
    teacher_hidden, teacher_head = torch.randn(seq, 64, device=device), torch.randn(vocab, 64, device=device)
    top_ids, top_logprobs = llmkernels.topk_logprobs(teacher_logits, 8, temperature=2.0)
    return {
        "apply_rotary": _grad_of(lambda: llmkernels.apply_rotary(q, k, cos, sin, positions), q, k),
        "rotary_embedding": _grad_of(lambda: llmkernels.rotary_embedding(q, cos[:, :16], sin[:, :16], interleaved=True), q),
        "add_sinusoidal_position_encoding": _grad_of(lambda: llmkernels.add_sinusoidal_position_encoding(x, scale=2.0), x),
        "swiglu": _grad_of(lambda: llmkernels.swiglu(x), x),
        "geglu": _grad_of(lambda: llmkernels.geglu(x, approximate="tanh"), x),
        "attention": _grad_of(lambda: llmkernels.attention(q, k, v, causal=True), q, k, v),
        "cross_entropy": _grad_of(lambda: llmkernels.cross_entropy(logits, target, label_smoothing=0.1), logits),
        "linear_cross_entropy": _grad_of(lambda: llmkernels.linear_cross_entropy(hidden, lm_head, target), hidden, lm_head),
        "distillation_loss": _grad_of(
            lambda: llmkernels.distillation_loss(logits, teacher_logits, target, temperature=2.0, beta=0.5, hard_weight=0.3),
            logits,
        ),
        "linear_distillation_loss": _grad_of(
            lambda: llmkernels.linear_distillation_loss(
                hidden, lm_head, teacher_hidden, teacher_head, target, temperature=2.0, hard_weight=0.3
            ),
            hidden, lm_head,
        ),
        "linear": _grad_of(lambda: llmkernels.linear(x, projection, projection_bias), x, projection, projection_bias),
        "rms_norm": _grad_of(lambda: llmkernels.rms_norm(x, norm_weight, residual=x * 0.5), x, norm_weight),
        "topk_logprobs": _grad_of(lambda: llmkernels.topk_logprobs(teacher_logits, 8, temperature=2.0)),
        "linear_topk_logprobs": _grad_of(
            lambda: llmkernels.linear_topk_logprobs(teacher_hidden, teacher_head, 8, temperature=2.0)
        ),
        "topk_distillation_loss": _grad_of(
            lambda: llmkernels.topk_distillation_loss(logits, top_ids, top_logprobs, target, temperature=2.0, hard_weight=0.3),
            logits,
        ),
        "linear_topk_distillation_loss": _grad_of(
            lambda: llmkernels.linear_topk_distillation_loss(
                hidden, lm_head, top_ids, top_logprobs, target, temperature=2.0, hard_weight=0.3
            ),
            hidden, lm_head,
        ),
    }


def _time(fn, repeats=5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _lines(device: str, small: bool):
    runs = cases(device, 16, 100) if small else cases(device)
    for op in backends.registered_ops():
        fn = runs.get(op)
        if fn is None:
            yield f"{op:<34} {'-':<10} no tour case for this op yet"
            continue
        with llmkernels.use_backend("reference"):
            expected = fn()
        reference_time = None
        for backend in llmkernels.available_backends(device, op):
            label = f"{op:<34} {backend:<10}"
            if backend == "triton" and device == "cpu":
                yield f"{label} skipped: Triton's CPU interpreter checks kernels in the tests; it is not raced"
                continue
            with llmkernels.use_backend(backend):
                error = (fn() - expected).abs().max().item()
                elapsed = _time(fn)
            reference_time = reference_time or elapsed
            yield f"{label} {error:>24.2e} {elapsed * 1e3:>10.2f} {reference_time / elapsed:>8.2f}x"


def run(small: bool = False) -> None:
    """Print ``info()``, then one line per op and backend; ``small``: tiny sizes (tests)."""
    torch.manual_seed(0)
    llmkernels.info()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        print()
        print(f"on {device}: forward and backward, float32, against the reference")
        print(f"{'op':<34} {'backend':<10} {'max |err| vs reference':>24} {'time (ms)':>10} {'speed-up':>9}")
        for line in _lines(device, small):
            print(line, flush=True)
