"""Every public op under ``torch.compile(dynamic=True, fullgraph=True)``: symbolic shapes and
scalars (a scale derived from head_dim, a z_loss passed as an argument) trace without a graph
break, and two sizes run through one compiled function with the eager answers, forward and
backward.

``attention_varlen`` is left out: its boundaries are host values (``cu_seqlens.tolist()``), which no
full graph can hold; it runs on ``attention``, which is compiled here."""

import pytest
import torch

import llmkernels
from tests.helpers import assert_close


def _rotary(q, k, cos, sin):
    a, b = llmkernels.apply_rotary(q, k, cos, sin)
    return a.sum() + b.sum() * 0.5


def _rotary_embedding(q, cos, sin):
    return (llmkernels.rotary_embedding(q, cos, sin, interleaved=True) * torch.arange(q.shape[-1])).sum()


def _sinusoidal(x):
    return (llmkernels.add_sinusoidal_position_encoding(x, scale=x.shape[-1] ** 0.5) ** 2).sum()


def _swiglu(gate_up, gate):
    return (llmkernels.swiglu(gate_up) ** 2).sum() + llmkernels.swiglu(*gate.chunk(2, dim=-1)).sum()


def _geglu(gate_up, gate):
    return (llmkernels.geglu(gate_up) ** 2).sum() + llmkernels.geglu(*gate.chunk(2, dim=-1), approximate="tanh").sum()


def _attention(q, k, v, softcap):
    return (llmkernels.attention(q, k, v, causal=True, softcap=softcap) ** 2).sum()


def _attention_scale(q, k, v, scale):
    return (llmkernels.attention(q, k, v, scale=scale, window=(3, 0)) ** 2).sum()


def _sdpa(q, k, v):
    return (llmkernels.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True) ** 2).sum()


def _cross_entropy(logits, target, z_loss):
    return llmkernels.cross_entropy(logits, target, label_smoothing=0.1, z_loss=z_loss)


def _cross_entropy_inplace(logits, target, z_loss):
    return llmkernels.cross_entropy(logits * 1.0, target, z_loss=z_loss, inplace_backward=True)


def _linear_cross_entropy(hidden, weight, target, z_loss):
    return llmkernels.linear_cross_entropy(hidden, weight, target, z_loss=z_loss, softcap=30.0)


def _distillation(student, teacher, target, temperature):
    return llmkernels.distillation_loss(student, teacher, target, temperature=temperature, beta=0.5, hard_weight=0.3)


def _linear_distillation(hidden, weight, teacher_hidden, teacher_weight, target, temperature):
    return llmkernels.linear_distillation_loss(
        hidden, weight, teacher_hidden, teacher_weight, target, temperature=temperature, hard_weight=0.3, softcap=30.0
    )


def _topk_teacher(teacher, temperature):
    return llmkernels.topk_logprobs(teacher.detach(), 4, temperature=temperature)


def _topk_logprobs(logits, temperature):
    """No gradient: a loss that depends on ``logits`` directly, plus the (detached) top-k logprobs."""
    ids, logprobs = llmkernels.topk_logprobs(logits, 4, temperature=temperature)
    return (logits ** 2).sum() + logprobs.sum() + ids.sum() * 1e-3


def _linear_topk_logprobs(hidden, weight, temperature):
    ids, logprobs = llmkernels.linear_topk_logprobs(hidden, weight, 4, temperature=temperature, softcap=30.0)
    return (hidden ** 2).sum() + (weight ** 2).sum() + logprobs.sum() + ids.sum() * 1e-3


def _topk_distillation(student, teacher, target, temperature):
    ids, logprobs = _topk_teacher(teacher, temperature)
    return llmkernels.topk_distillation_loss(student, ids, logprobs, target, temperature=temperature, hard_weight=0.3)


def _linear_topk_distillation(hidden, weight, teacher, target, temperature):
    ids, logprobs = _topk_teacher(teacher, temperature)
    return llmkernels.linear_topk_distillation_loss(
        hidden, weight, ids, logprobs, target, temperature=temperature, hard_weight=0.3
    )


def _linear(x, weight, bias):
    return (llmkernels.linear(x, weight, bias) ** 2).sum() + llmkernels.linear(x, weight).sum()


def _rms_norm(x, residual, weight, eps):
    y, h = llmkernels.rms_norm(x, weight, eps, residual=residual)
    return (y * y).sum() + h.sum() + llmkernels.rms_norm(x, None, eps).sum()


def _qkv(n, d):
    return [torch.randn(2, 4, n, d), torch.randn(2, 2, n, d), torch.randn(2, 2, n, d)]


def _inputs(name, n):
    """(tensors that get gradients, other arguments) at size ``n``."""
    d = 8 + 8 * (n % 2)  # head_dim differs between the sizes, so the default scale is symbolic
    cos, sin = llmkernels.rope_cache(64, d)
    vocab = 50 + n
    target = torch.randint(0, vocab, (n,))
    return {
        "apply_rotary": (_qkv(n, d)[:2], [cos, sin]),
        "rotary_embedding": (_qkv(n, d)[:1], [cos, sin]),
        "add_sinusoidal_position_encoding": ([torch.randn(2, n, d)], []),
        "swiglu": ([torch.randn(2, n, 2 * d), torch.randn(n, 2 * n + 2)], []),
        "geglu": ([torch.randn(2, n, 2 * d), torch.randn(n, 2 * n + 2)], []),
        "attention": (_qkv(n, d), [20.0 + n]),
        "attention (scale)": (_qkv(n, d), [0.1 * n]),
        "scaled_dot_product_attention": (_qkv(n, d), []),
        "cross_entropy": ([torch.randn(n, vocab)], [target, 1e-4 * n]),
        "cross_entropy (inplace_backward)": ([torch.randn(n, vocab)], [target, 1e-4 * n]),
        "linear_cross_entropy": ([torch.randn(n, d), torch.randn(vocab, d)], [target, 1e-4 * n]),
        "distillation_loss": ([torch.randn(n, vocab)], [torch.randn(n, vocab), target, 1.0 + 0.1 * n]),
        "linear_distillation_loss": (
            [torch.randn(n, d), torch.randn(vocab, d)], [torch.randn(n, d + 2), torch.randn(vocab, d + 2), target, 1.0 + 0.1 * n]
        ),
        "rms_norm": ([torch.randn(2, n, d), torch.randn(2, n, d), torch.randn(d)], [1e-6 * n]),
        "linear": ([torch.randn(2, n, d), torch.randn(n + 3, d), torch.randn(n + 3)], []),
        "topk_logprobs": ([torch.randn(n, vocab)], [1.0 + 0.1 * n]),
        "linear_topk_logprobs": ([torch.randn(n, d), torch.randn(vocab, d)], [1.0 + 0.1 * n]),
        "topk_distillation_loss": ([torch.randn(n, vocab)], [torch.randn(n, vocab), target, 1.0 + 0.1 * n]),
        "linear_topk_distillation_loss": (
            [torch.randn(n, d), torch.randn(vocab, d)], [torch.randn(n, vocab), target, 1.0 + 0.1 * n]
        ),
    }[name]


FUNCTIONS = {
    "apply_rotary": _rotary,
    "rotary_embedding": _rotary_embedding,
    "add_sinusoidal_position_encoding": _sinusoidal,
    "swiglu": _swiglu,
    "geglu": _geglu,
    "attention": _attention,
    "attention (scale)": _attention_scale,
    "scaled_dot_product_attention": _sdpa,
    "cross_entropy": _cross_entropy,
    "cross_entropy (inplace_backward)": _cross_entropy_inplace,
    "linear_cross_entropy": _linear_cross_entropy,
    "distillation_loss": _distillation,
    "linear_distillation_loss": _linear_distillation,
    "rms_norm": _rms_norm,
    "linear": _linear,
    "topk_logprobs": _topk_logprobs,
    "linear_topk_logprobs": _linear_topk_logprobs,
    "topk_distillation_loss": _topk_distillation,
    "linear_topk_distillation_loss": _linear_topk_distillation,
}


def test_every_registered_op_is_covered():
    covered = {name.split(" ")[0] for name in FUNCTIONS}
    assert set(llmkernels.backends.registered_ops()) <= covered


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_dynamic_fullgraph_forward_backward(name):
    fn = FUNCTIONS[name]
    compiled = torch.compile(fn, dynamic=True, fullgraph=True, backend="aot_eager")
    for n in (5, 12):
        leaves, rest = _inputs(name, n)
        leaves = [t.requires_grad_(True) for t in leaves]
        got = compiled(*leaves, *rest)
        got_grads = torch.autograd.grad(got, leaves)
        want = fn(*leaves, *rest)
        want_grads = torch.autograd.grad(want, leaves)
        assert_close(got, want)
        for g, w in zip(got_grads, want_grads):
            assert_close(g, w)
