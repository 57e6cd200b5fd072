"""Where the device time of the ops found slow on the first GPU lease goes (BENCHMARKS.md, eighth
session): each op's forward+backward, ours and the fastest peer, under torch.profiler, with the
kernels that ran, their launches and their device time; then, for cross_entropy, the Triton
launch's (BLOCK, num_warps) alternatives, and for rms_norm the ONE_BLOCK layout off and on
(triton_kernels.ONE_BLOCK_ROWS), timed directly. Meant for the next GPU lease, after
device_check.sh:

    python3 benchmarks/device_profile.py [--device cuda] [--tiny]

--tiny (small shapes) lets it run on a CPU to check the script itself; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import llmkernels


def _cases(device: str, tiny: bool):
    bf16 = torch.bfloat16
    n, v = (64, 1000) if tiny else (4096, 32768)
    logits = torch.randn(n, v, device=device, dtype=bf16, requires_grad=True)
    target = torch.randint(0, v, (n,), device=device)
    yield "cross_entropy bf16", {
        "ours": lambda: llmkernels.cross_entropy(logits, target).backward(),
        "F.cross_entropy": lambda: F.cross_entropy(logits.float(), target).backward(),
    }
    shape = (2, 16, 64) if tiny else (8, 2048, 4096)
    x = torch.randn(shape, device=device, dtype=bf16, requires_grad=True)
    r = torch.randn(shape, device=device, dtype=bf16, requires_grad=True)
    w = torch.ones(shape[-1], device=device, dtype=bf16, requires_grad=True)

    def rms_ours():
        y, h = llmkernels.rms_norm(x, w, 1e-6, residual=r)
        (y.float().sum() + h.float().sum()).backward()

    def rms_eager():
        h = x + r
        (F.rms_norm(h, (shape[-1],), w, 1e-6).float().sum() + h.float().sum()).backward()

    yield "rms_norm residual bf16", {"ours": rms_ours, "eager": rms_eager}
    b, h, s, d = (1, 2, 128, 64) if tiny else (4, 16, 4096, 128)
    q, k, vv = (torch.randn(b, h, s, d, device=device, dtype=bf16, requires_grad=True) for _ in range(3))
    yield "attention causal bf16", {
        "ours": lambda: llmkernels.attention(q, k, vv, causal=True).float().sum().backward(),
        "SDPA": lambda: F.scaled_dot_product_attention(q, k, vv, is_causal=True).float().sum().backward(),
    }


def _profile(name: str, fn, device: str, rows: int = 10) -> None:
    fn()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.synchronize()
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(3):
            fn()
        if device == "cuda":
            torch.cuda.synchronize()
    sort = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
    print(f"--- {name} (3 calls)")
    print(prof.key_averages().table(sort_by=sort, row_limit=rows, max_name_column_width=60))


def _time(fn, device: str, repeats: int = 20) -> float:
    fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _cross_entropy_launches(device: str, tiny: bool) -> None:
    from llmkernels.ops.cross_entropy import triton_kernels

    n, v = (64, 1000) if tiny else (4096, 32768)
    logits = torch.randn(n, v, device=device, dtype=torch.bfloat16, requires_grad=True)
    target = torch.randint(0, v, (n,), device=device)
    original = triton_kernels.launch_config
    print("--- cross_entropy bf16 f+b, Triton (BLOCK, num_warps) alternatives, median ms")
    try:
        for block in (1024, 2048, 4096, 8192, 16384, 32768):
            for warps in (w for w in (4, 8, 16, 32) if block // (32 * w) <= 64):  # at most 64 columns a thread
                triton_kernels.launch_config = lambda classes, max_block=0, b=block, w=warps: (b, w)
                with llmkernels.use_backend("triton"):
                    ms = _time(lambda: llmkernels.cross_entropy(logits, target).backward(), device)
                print(f"BLOCK {block:5d} num_warps {warps:2d}: {ms:.3f} ms")
    finally:
        triton_kernels.launch_config = original


def _rms_norm_layouts(device: str, tiny: bool, dtypes=(torch.bfloat16, torch.float32)) -> None:
    from llmkernels.ops.rms_norm import triton_kernels

    shape = (2, 16, 64) if tiny else (8, 2048, 4096)
    print("--- rms_norm residual f+b, Triton, the ONE_BLOCK layout off / on, median ms")
    for dtype in dtypes:
        x, r = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in range(2))
        w = torch.ones(shape[-1], device=device, dtype=dtype, requires_grad=True)

        def step():
            with llmkernels.use_backend("triton"):
                y, h = llmkernels.rms_norm(x, w, 1e-6, residual=r)
            (y.float().sum() + h.float().sum()).backward()

        for on in (False, True, False, True):
            triton_kernels.ONE_BLOCK_ROWS = on
            print(f"{str(dtype):15s} ONE_BLOCK_ROWS={on!s:5s}: {_time(step, device):.3f} ms")
        triton_kernels.ONE_BLOCK_ROWS = False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="small shapes: checks the script on a CPU")
    args = parser.parse_args()
    torch.manual_seed(0)
    for case, contenders in _cases(args.device, args.tiny):
        for who, fn in contenders.items():
            _profile(f"{case}: {who}", fn, args.device)
    if args.device == "cuda":
        _cross_entropy_launches(args.device, args.tiny)
        _rms_norm_layouts(args.device, args.tiny)


if __name__ == "__main__":
    main()
