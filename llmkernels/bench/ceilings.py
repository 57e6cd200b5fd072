"""The day's ceilings, measured before the cases: copy bandwidth and the GEMM rate per dtype. Each
case's floor is the larger of bytes / bandwidth and FLOPs / GEMM rate (a roofline with the
measured, not the datasheet, ceilings), and the report gives the fraction of it each contender
reaches (1.0: as fast as the machine can move or multiply)."""

from __future__ import annotations

import dataclasses

import torch

from llmkernels.bench.results import Row
from llmkernels.bench.stats import Summary, interleaved, summarize


@dataclasses.dataclass
class Ceilings:
    copy_gbps: Summary
    gemm_gflops: dict[str, Summary]  # "fp32" / "bf16" -> GFLOP/s
    copy_bytes: int = 0
    gemm_n: int = 0

    def floor_seconds(self, nbytes: float, flops: float, dtype: str) -> float:
        gemm = self.gemm_gflops.get(dtype) or self.gemm_gflops["fp32"]
        return max(nbytes / (self.copy_gbps.median * 1e9), flops / (gemm.median * 1e9))

    def rows(self) -> list[Row]:
        rows = [Row("ceiling", "copy (warm)", "-", "GB/s", f"{self.copy_bytes // 2**20} MB", *_fields(self.copy_gbps))]
        for dtype, rate in self.gemm_gflops.items():
            rows.append(Row("ceiling", f"GEMM {dtype}", "-", "GFLOP/s", f"{self.gemm_n}^3 {dtype}", *_fields(rate)))
        return rows


_SIZES = {"cpu": (256 * 2**20, 2048), "cuda": (2 * 2**30, 8192), "tiny": (4 * 2**20, 256)}


def _fields(s: Summary):
    return s.median, s.p20, s.p80


def measure(device: str = "cpu", rounds: int = 7, tiny: bool = False) -> Ceilings:
    """Copy a large buffer (bytes read + written per second) and multiply square matrices
    (2 n^3 FLOPs per product) in fp32 and bf16, ``rounds`` interleaved samples each."""
    kind = "tiny" if tiny else ("cuda" if device.startswith("cuda") else "cpu")
    nbytes, n = _SIZES[kind]
    buffer = torch.empty(nbytes, dtype=torch.uint8, device=device)
    target = torch.empty_like(buffer)
    # Touch every page of both first, and copy into the same target every time: clone() would
    # fault in fresh pages on each call (6.7 GB/s here against ~33 warm), a floor so low that
    # memory-bound ops reached "over 100% of the floor".
    buffer.fill_(1)
    target.fill_(0)
    mats = {dtype: [torch.randn(n, n, device=device, dtype=t) for _ in range(2)]
            for dtype, t in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    contenders = {"copy": lambda: target.copy_(buffer)}
    for dtype, (a, b) in mats.items():
        contenders[dtype] = lambda a=a, b=b: a @ b
    min_sample = 0.002 if device.startswith("cuda") else 0.0
    samples = interleaved(contenders, rounds=rounds, warmup=1, device=device, min_sample_s=min_sample)
    copy = summarize([2 * nbytes / s / 1e9 for s in samples["copy"]])
    gemm = {dtype: summarize([2 * n**3 / s / 1e9 for s in samples[dtype]]) for dtype in mats}
    return Ceilings(copy, gemm, nbytes, n)
