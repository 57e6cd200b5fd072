"""The implementations a user would pick instead of ours, written as they would write them.

liger-kernel is never a dependency: it is imported lazily, and a peer whose import fails is simply
absent (benchmark machines add it outside the project's environment, e.g. ``pip install --no-deps
--target DIR liger-kernel`` with DIR on PYTHONPATH).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def hf_apply_rotary_pos_emb(q, k, cos, sin):
    """transformers' apply_rotary_pos_emb with cos/sin (batch, seq, head_dim) unsqueezed on heads."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def naive_attention(q, k, v, causal):
    """softmax(q k^T / sqrt(d)) v with the whole score matrix in memory, in the inputs' dtype."""
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        sq, sk = q.shape[-2], k.shape[-2]
        mask = torch.ones(sq, sk, dtype=torch.bool, device=q.device).tril(sk - sq)
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def sdpa_backends(device: str) -> dict[str, object]:
    """SDPA's backends to pin on this device: on CUDA each one by name (flash, cuDNN, memory-efficient),
    on a CPU SDPA's own choice (its flash kernel)."""
    if not device.startswith("cuda"):
        return {"SDPA": None}
    from torch.nn.attention import SDPBackend

    return {"SDPA[flash]": SDPBackend.FLASH_ATTENTION, "SDPA[cudnn]": SDPBackend.CUDNN_ATTENTION,
            "SDPA[efficient]": SDPBackend.EFFICIENT_ATTENTION}


def sdpa(q, k, v, causal, backend=None, enable_gqa=False):
    if backend is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=enable_gqa)
    from torch.nn.attention import sdpa_kernel

    with sdpa_kernel(backend):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=enable_gqa)


def plain_distillation_loss(student, teacher, beta, temperature):
    """The plain PyTorch statement: full log-softmaxes, mean over rows, T^2 (forward KL for beta 0,
    the generalised JSD otherwise)."""
    log_s = F.log_softmax(student / temperature, dim=-1)
    log_t = F.log_softmax(teacher / temperature, dim=-1)
    if beta == 0.0:
        loss = F.kl_div(log_s, log_t, reduction="batchmean", log_target=True)
    else:
        log_m = torch.logsumexp(torch.stack([log_s + math.log(1 - beta), log_t + math.log(beta)]), dim=0)
        loss = beta * F.kl_div(log_m, log_t, reduction="batchmean", log_target=True) + \
            (1 - beta) * F.kl_div(log_m, log_s, reduction="batchmean", log_target=True)
    return loss * temperature**2


def eager_add_rms_norm(x, r, w, eps):
    h = x + r
    return F.rms_norm(h, (h.shape[-1],), w, eps), h


def eager_swiglu(gate_up):
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


def liger(name: str):
    """liger-kernel's ``name`` (from the list below), or None when liger-kernel is not importable here."""
    where = {
        "LigerFusedLinearJSDLoss": "liger_kernel.chunked_loss",
        "LigerCrossEntropyLoss": "liger_kernel.transformers",
        "LigerFusedLinearCrossEntropyLoss": "liger_kernel.transformers",
        "LigerRMSNormFunction": "liger_kernel.ops.rms_norm",
        "LigerSiLUMulFunction": "liger_kernel.ops.swiglu",
        "liger_rotary_pos_emb": "liger_kernel.transformers.rope",
    }[name]
    try:
        module = __import__(where, fromlist=[name])
        return getattr(module, name)
    except Exception:  # not installed, or a build that does not import here
        return None
