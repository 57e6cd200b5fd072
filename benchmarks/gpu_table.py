"""GPU bandwidth table for the memory-bound positional ops, against the peers and the copy ceiling.

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
    print(f"{'case':<22} {'implementation':<26} {'GB/s':>8}")
    for case, impl, rate in rows:
        print(f"{case:<22} {impl:<26} {rate:8.0f}")


if __name__ == "__main__":
    main()
