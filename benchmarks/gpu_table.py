"""GPU bandwidth table for the memory-bound ops (positional, rms_norm, swiglu, the top-k teacher's
ops), against the peers and the copy ceiling.

Run by benchmarks/device_check.sh on a CUDA machine. GB/s counts the bytes an op must move: read
x, write out (and the same again for the backward).
"""

import torch
import triton.testing

import llmkernels


def gbps(nbytes, ms):
    return nbytes / ms / 1e6


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def hf_rotary(q, k, cos, sin):
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def _forward_rows(case, nbytes, ours, peer, op, device):
    """GB/s of ``ours`` on every backend present and of ``peer`` eager and compiled (forward only)."""
    rows = []
    for backend in llmkernels.available_backends(device, op):
        with llmkernels.use_backend(backend):
            rows.append((case, backend, gbps(nbytes, triton.testing.do_bench(ours))))
    rows.append((case, "eager", gbps(nbytes, triton.testing.do_bench(peer))))
    compiled = torch.compile(peer)
    rows.append((case, "compiled", gbps(nbytes, triton.testing.do_bench(compiled))))
    return rows


def norm_and_mlp_rows(device, dtype):
    """rms_norm with residual (reads x, r, writes y, h) and packed swiglu (reads 2H, writes H)."""
    name = str(dtype)[6:]
    x, r = (torch.randn(8, 2048, 4096, device=device, dtype=dtype) for _ in range(2))
    w = torch.ones(4096, device=device, dtype=dtype)
    rows = _forward_rows(f"rms_norm+res {name}", 4 * x.numel() * x.element_size(),
                         lambda: llmkernels.rms_norm(x, w, 1e-6, residual=r),
                         lambda: torch.nn.functional.rms_norm(x + r, (4096,), w, 1e-6), "rms_norm", device)
    gate_up = torch.randn(8, 2048, 2 * 5632, device=device, dtype=dtype)
    rows += _forward_rows(f"swiglu {name}", gate_up.numel() * 3 // 2 * gate_up.element_size(),
                          lambda: llmkernels.swiglu(gate_up),
                          lambda: torch.nn.functional.silu(gate_up[..., :5632]) * gate_up[..., 5632:], "swiglu", device)
    return rows


def topk_rows(device, dtype):
    """The top-k teacher's ops at a 32K vocabulary, k = 64: topk_logprobs (reads the logits; peer:
    torch.topk over log_softmax) and topk_distillation_loss forward + backward (reads the student,
    writes its gradient; peer: the plain PyTorch statement through autograd)."""
    name = str(dtype)[6:]
    logits = torch.randn(8192, 32768, device=device, dtype=dtype)
    rows = _forward_rows(f"topk_logprobs k64 {name}", logits.numel() * logits.element_size(),
                         lambda: llmkernels.topk_logprobs(logits, 64, temperature=2.0),
                         lambda: torch.log_softmax(logits.float() / 2.0, -1).topk(64, -1), "topk_logprobs", device)
    ids, logprobs = llmkernels.topk_logprobs(logits, 64, temperature=2.0)
    student = torch.randn_like(logits, requires_grad=True)

    def ours():
        llmkernels.topk_distillation_loss(student, ids, logprobs, temperature=2.0).backward()

    def peer():
        log_q = torch.log_softmax(student.float() / 2.0, -1)
        chosen = log_q.gather(-1, ids.long())
        tail_q = torch.log1p(-chosen.exp().sum(-1).clamp_max(1 - 1e-6))
        tail_r = torch.log1p(-logprobs.exp().sum(-1).clamp_max(1 - 1e-6))
        loss = (logprobs.exp() * (logprobs - chosen)).sum(-1) + tail_r.exp() * (tail_r - tail_q)
        (4.0 * loss.mean()).backward()

    nbytes = 2 * student.numel() * student.element_size()
    for backend in llmkernels.available_backends(device, "topk_distillation_loss"):
        with llmkernels.use_backend(backend):
            rows.append((f"topk_distill fwd+bwd {name}", backend, gbps(nbytes, triton.testing.do_bench(ours))))
    rows.append((f"topk_distill fwd+bwd {name}", "eager", gbps(nbytes, triton.testing.do_bench(peer))))
    return rows


def main():
    device = "cuda"
    rows = []
    big = torch.empty(2 * 1024**3, dtype=torch.uint8, device=device)
    copy_ms = triton.testing.do_bench(lambda: big.clone())
    rows.append(("copy (ceiling)", "torch clone", gbps(2 * big.numel(), copy_ms)))
    del big
    for dtype in (torch.bfloat16, torch.float32):
        q = torch.randn(8, 32, 4096, 128, device=device, dtype=dtype)
        k = torch.randn(8, 8, 4096, 128, device=device, dtype=dtype)
        cos, sin = llmkernels.rope_cache(4096, 128, device=device)
        nbytes = 2 * (q.numel() + k.numel()) * q.element_size()
        for backend in llmkernels.available_backends(device, "apply_rotary"):
            with llmkernels.use_backend(backend):
                ms = triton.testing.do_bench(lambda: llmkernels.apply_rotary(q, k, cos, sin))
            rows.append((f"apply_rotary {str(dtype)[6:]}", backend, gbps(nbytes, ms)))
        hf_cos = torch.cat((cos, cos), -1).to(dtype)[None, None]
        hf_sin = torch.cat((sin, sin), -1).to(dtype)[None, None]
        ms = triton.testing.do_bench(lambda: hf_rotary(q, k, hf_cos, hf_sin))
        rows.append((f"apply_rotary {str(dtype)[6:]}", "HF rotate_half eager", gbps(nbytes, ms)))
        compiled = torch.compile(hf_rotary)
        ms = triton.testing.do_bench(lambda: compiled(q, k, hf_cos, hf_sin))
        rows.append((f"apply_rotary {str(dtype)[6:]}", "HF rotate_half compiled", gbps(nbytes, ms)))
        x = torch.randn(16, 4096, 2048, device=device, dtype=dtype)
        for backend in llmkernels.available_backends(device, "add_sinusoidal_position_encoding"):
            with llmkernels.use_backend(backend):
                ms = triton.testing.do_bench(lambda: llmkernels.add_sinusoidal_position_encoding(x))
            rows.append((f"sinusoidal {str(dtype)[6:]}", backend, gbps(2 * x.numel() * x.element_size(), ms)))
        rows.extend(norm_and_mlp_rows(device, dtype))
        rows.extend(topk_rows(device, dtype))
    print(f"{'case':<22} {'implementation':<26} {'GB/s':>8}")
    for case, impl, rate in rows:
        print(f"{case:<22} {impl:<26} {rate:8.0f}")


if __name__ == "__main__":
    main()
