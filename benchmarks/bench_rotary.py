"""Rotary embedding against the Hugging Face `rotate_half` formulation, eager and compiled.

Target: apply_rotary forward+backward on q, k of (4, 16, 2048, 128) fp32 >= 3x the HF
formulation on the 2-core CPU.
"""

import pytest
import torch

import llmkernels
from benchmarks.common import interleaved_medians, record

BATCH, HEADS, SEQ, HEAD_DIM = 4, 16, 2048, 128


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def hf_apply_rotary_pos_emb(q, k, cos, sin):
    # transformers' apply_rotary_pos_emb with cos/sin (batch, seq, head_dim) unsqueezed on heads.
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def _fwd_bwd(rotate, q, k, grad_q, grad_k):
    def step():
        q.grad = k.grad = None  # a training step gets fresh gradient tensors
        q_out, k_out = rotate(q, k)
        torch.autograd.backward((q_out, k_out), (grad_q, grad_k))

    return step


@pytest.fixture(scope="module")
def tensors():
    torch.manual_seed(0)
    q = torch.randn(BATCH, HEADS, SEQ, HEAD_DIM, requires_grad=True)
    k = torch.randn(BATCH, HEADS, SEQ, HEAD_DIM, requires_grad=True)
    cos, sin = llmkernels.rope_cache(SEQ, HEAD_DIM)
    hf_cos = torch.cat((cos, cos), -1).expand(BATCH, SEQ, HEAD_DIM)
    hf_sin = torch.cat((sin, sin), -1).expand(BATCH, SEQ, HEAD_DIM)
    return q, k, cos, sin, hf_cos, hf_sin, torch.randn_like(q), torch.randn_like(k)


def test_apply_rotary_fwd_bwd_vs_hf(benchmark, tensors):
    q, k, cos, sin, hf_cos, hf_sin, grad_q, grad_k = tensors
    compiled = torch.compile(hf_apply_rotary_pos_emb)
    ours = _fwd_bwd(lambda a, b: llmkernels.apply_rotary(a, b, cos, sin), q, k, grad_q, grad_k)
    contenders = {
        "hf rotate_half (eager)": _fwd_bwd(lambda a, b: hf_apply_rotary_pos_emb(a, b, hf_cos, hf_sin), q, k, grad_q, grad_k),
        "llmkernels.apply_rotary": ours,
        "hf rotate_half (torch.compile)": _fwd_bwd(lambda a, b: compiled(a, b, hf_cos, hf_sin), q, k, grad_q, grad_k),
    }
    # Same answer before timing anything.
    expected = hf_apply_rotary_pos_emb(q, k, hf_cos, hf_sin)
    got = llmkernels.apply_rotary(q, k, cos, sin)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    medians = interleaved_medians(contenders, rounds=7)
    record(
        f"apply_rotary fwd+bwd, q,k {BATCH}x{HEADS}x{SEQ}x{HEAD_DIM} fp32 "
        f"[{llmkernels.backends.resolve('apply_rotary', q.device, q.dtype)}]",
        medians, "llmkernels.apply_rotary", target={"hf rotate_half (eager)": 3.0},
    )
    benchmark.pedantic(ours, rounds=3, iterations=1)


def test_sinusoidal_fwd_bwd_vs_eager_table(benchmark):
    torch.manual_seed(0)
    x = torch.randn(8, 2048, 1024, requires_grad=True)
    grad = torch.randn_like(x)
    table = llmkernels.sinusoidal_table(2048, 1024)

    def eager():
        x.grad = None
        (x * 2.0 + table).backward(grad)

    def ours():
        x.grad = None
        llmkernels.add_sinusoidal_position_encoding(x, scale=2.0).backward(grad)

    medians = interleaved_medians({"eager x*scale + table": eager, "llmkernels": ours}, rounds=7)
    record("add_sinusoidal_position_encoding fwd+bwd, 8x2048x1024 fp32", medians, "llmkernels")
    benchmark.pedantic(ours, rounds=3, iterations=1)
