"""The transformers drop-in on a Llama step (issue 11): ``attn_implementation="llmkernels"`` plus
``apply_llmkernels`` against ``attn_implementation="sdpa"`` unpatched.

LlamaConfig(vocab 32000, hidden 512, intermediate 1408, 4 layers, 8 heads, 4 kv heads), batch 1,
seq 1024, fp32: forward with ``labels`` and ``loss.backward()``. Each contender runs in a fresh
process: two warm steps, then the median of ``--steps`` timed steps, and the peak RSS added over a
warm step (one more step after the timed ones, with the allocator's free memory handed back to the
system first and ``/proc/self/clear_refs`` resetting the high-water mark). ``--rounds``
alternates the contenders' processes. ``--profile`` adds one profiled step per contender and prints
where its CPU time goes (``shares``): the GEMMs, attention, llmkernels' other ops, and the rest.
Run: ``python benchmarks/bench_transformers.py [--rounds 3] [--profile]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterable

# Self CPU time by kind: GEMMs (both contenders run the same ones: the step's floor), attention
# (the fused op, or SDPA's kernels and the transformers code around them), llmkernels' other ops,
# and everything else (the loss's log-softmax, elementwise, copies, the embedding's gradient).
GEMMS = ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm")


def kind(name: str) -> str:
    if name in GEMMS:
        return "gemm"
    if "attention" in name:
        return "attention"
    return "llmkernels ops" if "llmkernels" in name else "other"


def shares(events: Iterable[tuple[str, float]]) -> dict:
    """Seconds of self CPU time per ``kind`` from (op name, self seconds) pairs."""
    out = dict.fromkeys(("gemm", "attention", "llmkernels ops", "other"), 0.0)
    for name, seconds in events:
        out[kind(name)] += seconds
    return out

CONFIG = dict(vocab_size=32000, hidden_size=512, intermediate_size=1408, num_hidden_layers=4, num_attention_heads=8,
              num_key_value_heads=4, max_position_embeddings=2048)

_CHILD = r"""
import ctypes, json, statistics, sys, time, torch, transformers
which, steps, seq, config, profile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5] == "1"
def rss(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field)) / 1024
torch.manual_seed(0)
impl = "sdpa"
if which == "llmkernels":
    from llmkernels.integrations.transformers import apply_llmkernels
    impl = "llmkernels"
model = transformers.LlamaForCausalLM._from_config(transformers.LlamaConfig(**config), attn_implementation=impl)
if which == "llmkernels":
    apply_llmkernels(model)
ids = torch.randint(0, config["vocab_size"], (1, seq), generator=torch.Generator().manual_seed(1))
def step():
    model.zero_grad(set_to_none=True)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.item()
losses = [step(), step()]
times = []
for _ in range(steps):
    began = time.perf_counter()
    losses.append(step())
    times.append(time.perf_counter() - began)
# Memory of one more step: the allocator's free memory handed back first (malloc_trim), so the peak
# added is what the step itself holds at once (activations, gradients, workspaces), not reuse.
model.zero_grad(set_to_none=True)
ctypes.CDLL("libc.so.6").malloc_trim(0)
base = rss("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")
losses.append(step())
result = {"step_s": statistics.median(times), "peak_added_mb": rss("VmHWM:") - base, "loss": losses[-1]}
if profile:
    from benchmarks.bench_transformers import shares
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as p:
        step()
    result["shares"] = shares((e.key, e.self_cpu_time_total / 1e6) for e in p.key_averages())
print(json.dumps(result))
"""


def run(which: str, steps: int, seq: int, profile: bool = False) -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # benchmarks.bench_transformers
    out = subprocess.run([sys.executable, "-c", _CHILD, which, str(steps), str(seq), json.dumps(CONFIG), str(int(profile))],
                         capture_output=True, text=True, check=True, cwd=root)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--profile", action="store_true", help="one profiled step more per contender: CPU time by kind")
    args = parser.parse_args()
    results = {"sdpa": [], "llmkernels": []}
    for _ in range(args.rounds):
        for which in results:
            results[which].append(run(which, args.steps, args.seq, args.profile))
    speed = [s["step_s"] / o["step_s"] for s, o in zip(results["sdpa"], results["llmkernels"])]
    memory = [o["peak_added_mb"] / s["peak_added_mb"] for s, o in zip(results["sdpa"], results["llmkernels"])]
    for which, runs in results.items():
        print(f"{which:>10}: {statistics.median(r['step_s'] for r in runs):.3f} s/step, "
              f"+{statistics.median(r['peak_added_mb'] for r in runs):.0f} MB peak over a warm step, "
              f"loss {runs[-1]['loss']:.4f}")
    print(f"tokens/s ratio (llmkernels / sdpa): median {statistics.median(speed):.2f}x, range {min(speed):.2f}-{max(speed):.2f} "
          f"(target >= 1.2x); peak memory ratio {statistics.median(memory):.2f}x (target <= 0.6x)")
    if args.profile:
        print("profiled step, self CPU seconds by kind (median over rounds):")
        for which, runs in results.items():
            parts = {k: statistics.median(r["shares"][k] for r in runs) for k in runs[0]["shares"]}
            total = sum(parts.values())
            print(f"{which:>10}: " + ", ".join(f"{k} {v:.3f} ({v / total:.0%})" for k, v in parts.items()))


if __name__ == "__main__":
    main()
