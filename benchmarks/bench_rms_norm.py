"""RMSNorm with the fused residual add against eager PyTorch and torch.compile of the same code.

Target: rms_norm with residual, forward+backward at (8, 2048, 1024) fp32 (loss y.sum() + h.sum())
>= 2.5x eager (``h = x + r; F.rms_norm(h, (D,), w, eps)``) and >= 1.2x torch.compile of it.
"""

import pytest
import torch
import torch.nn.functional as F

import llmkernels
from benchmarks.common import interleaved_medians, record

SHAPE = (8, 2048, 1024)
EPS = 1e-6


def eager_add_rms_norm(x, r, w):
    h = x + r
    return F.rms_norm(h, (h.shape[-1],), w, EPS), h


def fused_add_rms_norm(x, r, w):
    return llmkernels.rms_norm(x, w, EPS, residual=r)


def _fwd_bwd(fn, x, r, w):
    def step():
        x.grad = r.grad = w.grad = None  # a training step gets fresh gradient tensors
        y, h = fn(x, r, w)
        (y.sum() + h.sum()).backward()

    return step


@pytest.fixture(scope="module")
def tensors():
    torch.manual_seed(0)
    x = torch.randn(*SHAPE, requires_grad=True)
    r = torch.randn(*SHAPE, requires_grad=True)
    w = (1.0 + 0.1 * torch.randn(SHAPE[-1])).requires_grad_(True)
    return x, r, w


def test_rms_norm_residual_fwd_bwd_vs_eager_and_compile(benchmark, tensors):
    x, r, w = tensors
    compiled = torch.compile(eager_add_rms_norm)
    # Same answer before timing anything.
    for got, want in zip(fused_add_rms_norm(x, r, w), eager_add_rms_norm(x, r, w)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    ours = _fwd_bwd(fused_add_rms_norm, x, r, w)
    contenders = {
        "eager x + r; F.rms_norm": _fwd_bwd(eager_add_rms_norm, x, r, w),
        "llmkernels.rms_norm(residual=)": ours,
        "torch.compile(x + r; F.rms_norm)": _fwd_bwd(compiled, x, r, w),
    }
    medians = interleaved_medians(contenders, rounds=7)
    record(
        f"rms_norm + residual fwd+bwd, {'x'.join(map(str, SHAPE))} fp32 "
        f"[{llmkernels.backends.resolve('rms_norm', x.device, x.dtype)}]",
        medians, "llmkernels.rms_norm(residual=)",
        target={"eager x + r; F.rms_norm": 2.5, "torch.compile(x + r; F.rms_norm)": 1.2},
    )
    benchmark.pedantic(ours, rounds=3, iterations=1)
