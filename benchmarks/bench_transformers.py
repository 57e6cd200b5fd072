"""The transformers drop-in on a Llama step (issue 11): ``attn_implementation="llmkernels"`` plus
``apply_llmkernels`` against ``attn_implementation="sdpa"`` unpatched.

LlamaConfig(vocab 32000, hidden 512, intermediate 1408, 4 layers, 8 heads, 4 kv heads), batch 1,
seq 1024, fp32: forward with ``labels`` and ``loss.backward()``. Each contender runs in a fresh
process: two warm steps, then the median of ``--steps`` timed steps, and the peak RSS added over a
warm step (one more step after the timed ones, with the allocator's free memory handed back to the
system first and ``/proc/self/clear_refs`` resetting the high-water mark). ``--rounds``
alternates the contenders' processes. Run: ``python benchmarks/bench_transformers.py [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CONFIG = dict(vocab_size=32000, hidden_size=512, intermediate_size=1408, num_hidden_layers=4, num_attention_heads=8,
              num_key_value_heads=4, max_position_embeddings=2048)

_CHILD = r"""
import ctypes, json, statistics, sys, time, torch, transformers
which, steps, seq, config = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
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
print(json.dumps({"step_s": statistics.median(times), "peak_added_mb": rss("VmHWM:") - base, "loss": losses[-1]}))
"""


def run(which: str, steps: int, seq: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, which, str(steps), str(seq), json.dumps(CONFIG)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seq", type=int, default=1024)
    args = parser.parse_args()
    results = {"sdpa": [], "llmkernels": []}
    for _ in range(args.rounds):
        for which in results:
            results[which].append(run(which, args.steps, args.seq))
    speed = [s["step_s"] / o["step_s"] for s, o in zip(results["sdpa"], results["llmkernels"])]
    memory = [o["peak_added_mb"] / s["peak_added_mb"] for s, o in zip(results["sdpa"], results["llmkernels"])]
    for which, runs in results.items():
        print(f"{which:>10}: {statistics.median(r['step_s'] for r in runs):.3f} s/step, "
              f"+{statistics.median(r['peak_added_mb'] for r in runs):.0f} MB peak over a warm step, "
              f"loss {runs[-1]['loss']:.4f}")
    print(f"tokens/s ratio (llmkernels / sdpa): median {statistics.median(speed):.2f}x, range {min(speed):.2f}-{max(speed):.2f} "
          f"(target >= 1.2x); peak memory ratio {statistics.median(memory):.2f}x (target <= 0.6x)")


if __name__ == "__main__":
    main()
