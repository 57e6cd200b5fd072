"""Peak memory of one contender's step, each in a fresh process, so that nothing another contender
allocated (or a caching allocator kept) is counted.

The child builds the case from its ``Spec``, warms up (a tiny problem first: one-time imports and
library set-up are not the op's memory; with ``warmup_full``, one full step, for compiled peers
whose compilation would otherwise count), then reports what one step adds to the peak: the resident
set (VmHWM over VmRSS, after resetting the peak) on a CPU, ``max_memory_allocated`` on CUDA.

    python -m llmkernels.bench.memory SPEC_JSON PROVIDER DEVICE WARMUP_FULL
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

RESULT = "BENCH_MEMORY "


def _rss_mb(field: str) -> float:
    with open("/proc/self/status", encoding="utf-8") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def _child(spec_json: str, provider: str, device: str, warmup_full: bool) -> float:
    import torch

    from llmkernels.bench import registry

    spec = registry.Spec.from_json(spec_json)
    spec.tiny().build(device).providers[provider]()
    step = spec.build(device).providers[provider]
    if warmup_full:
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    base = _rss_mb("VmRSS:")
    with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
        f.write("5")  # resets the peak (VmHWM) to the current resident set
    step()
    return _rss_mb("VmHWM:") - base


def supported(device: str) -> str | None:
    """None when peak memory can be measured for ``device`` here, else why not."""
    if device.startswith("cuda"):
        return None
    if not os.path.exists("/proc/self/clear_refs"):
        return "peak RSS needs Linux's /proc/self/clear_refs"
    return None


def measure(spec, provider: str, device: str, warmup_full: bool = False, timeout: float = 900) -> float:
    """MB one step of ``provider`` adds to the peak, measured in a fresh process."""
    env = {**os.environ, "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET", "0")}
    cmd = [sys.executable, "-m", "llmkernels.bench.memory", spec.to_json(), provider, device, str(int(warmup_full))]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=root)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT):
            return float(json.loads(line[len(RESULT):])["added_mb"])
    raise RuntimeError(f"memory child for {provider} failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}")


if __name__ == "__main__":
    added = _child(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1")
    print(RESULT + json.dumps({"added_mb": added}))
