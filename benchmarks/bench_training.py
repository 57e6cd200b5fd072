"""Training throughput, memory and loss: the `small` GPT at seq 512, `--ops llmkernels` against `--ops torch`.

Both contenders train the same model from the same seed on the same data (the stdlib corpus,
BPE 8192), each in a fresh subprocess (so peak RSS, read with ``resource.getrusage`` in the child,
is its own), in interleaved rounds (torch, llmkernels, torch, ...). Reported: the tokens/s ratio
(median step time), the peak RSS ratio, the final train/validation losses (must agree within 2%),
and a torch.profiler table per contender of where one step's time goes.

    python benchmarks/bench_training.py --steps 24 --rounds 3 [--bf16] [--checkpointing]   # the full report
    python benchmarks/bench_training.py --breakdown [--bf16]   # where the memory goes (benchmarks/training_memory.py)
    pytest benchmarks/bench_training.py -s      # fp32 and bf16, one round each; LLMKERNELS_BENCH_TRAIN_STEPS (default 24)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTENDERS = ("torch", "llmkernels")  # torch is the peer; llmkernels is ours
CHECKPOINTED = "llmkernels+checkpointing"  # ours with --checkpoint-activations: reported, not a target
LOSS_TOLERANCE = 0.02


def _child(args) -> None:
    """Runs in the fresh process: train, read peak RSS, then profile one more step."""
    if args.breakdown:
        from benchmarks.training_memory import breakdown

        print("BENCH_RESULT " + json.dumps(breakdown(args.ops, args.seq, args.batch, args.bf16)))
        return
    import torch

    from llmkernels.training import config as configs, loop

    out = tempfile.mkdtemp(prefix="bench-train-")
    ops, _, checkpointing = args.ops.partition("+")
    config = configs.build("small", ops=ops, steps=args.steps, checkpoint_activations=bool(checkpointing) or None, seq_len=args.seq, batch_size=args.batch,
                           log_every=1, eval_every=args.steps, eval_batches=2, sample_tokens=1, seed=0,
                           bf16=args.bf16 or None)
    result = loop.train(config, out=os.path.join(out, "run"), quiet=True)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [json.loads(line) for line in open(os.path.join(out, "run", "metrics.jsonl"))]
    step_s = [config.context * config.batch_size / r["tokens_per_s"] for r in rows[2:]]  # steps 1-2 warm up
    payload = {"ops": args.ops, "losses": [r["train_loss"] for r in rows], "val_loss": result["val_loss"],
               "median_step_s": statistics.median(step_s), "step_s": step_s, "tokens_per_step": config.context * config.batch_size,
               "peak_rss_mb": peak_rss_mb, "parameters": result["parameters"]}
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        from llmkernels.models import GPT
        from llmkernels.training import data

        corpus = data.load_corpus(None, build=False)
        torch.manual_seed(0)
        model = GPT(config.model_config(corpus.vocab_size))
        optimizer = loop._optimizer(model, config, torch.device("cpu"))  # the loop's own (fused) AdamW
        x, y = data.Batches(corpus.train, config.context, config.batch_size, 1, 0).get(1, 0)

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
                loss = model(x, y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        averages = prof.key_averages()
        payload["profile"] = averages.table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=48)
        payload["profile"] += "\n" + profile_shares(averages)
    print("BENCH_RESULT " + json.dumps(payload))


GEMMS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear")


def profile_shares(averages) -> str:
    """One step's self CPU time split into GEMMs and the rest (the rest is what fused ops can win)."""
    total = sum(e.self_cpu_time_total for e in averages)
    gemm = sum(e.self_cpu_time_total for e in averages if e.key in GEMMS)
    return (f"  step self CPU time {total / 1e3:,.0f} ms: GEMMs {gemm / 1e3:,.0f} ms ({gemm / max(total, 1):.0%}), "
            f"the rest {(total - gemm) / 1e3:,.0f} ms ({(total - gemm) / max(total, 1):.0%})")


def run_child(ops: str, steps: int, seq: int, batch: int, bf16: bool, profile: bool, breakdown: bool = False) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--ops", ops, "--steps", str(steps),
           "--seq", str(seq), "--batch", str(batch)] + (["--bf16"] if bf16 else []) + (["--profile"] if profile else [])
    cmd += ["--breakdown"] if breakdown else []
    from benchmarks.common import child_result

    return child_result(cmd, f"benchmark child ({ops})", cwd=ROOT)


def emulated_bf16(bf16: bool) -> str | None:
    """Why a bf16 run cannot be measured here, or None: both contenders' bf16 GEMMs would run in
    torch's scalar fallback on this CPU, hours of a benchmark that times that fallback, not the ops."""
    from llmkernels import bf16_support

    return bf16_support.emulated_bf16_message("--bf16") if bf16 and not bf16_support.cpu_bf16_matmul_is_native() else None


def compare(steps: int, seq: int = 512, batch: int = 4, rounds: int = 1, bf16: bool = False, profile: bool = True,
            checkpointing: bool = False) -> dict:
    from llmkernels.training import data

    data.load_corpus(None)  # build the cache here, so that no child pays for (or measures) it
    contenders = CONTENDERS + ((CHECKPOINTED,) if checkpointing else ())
    results = {name: [] for name in contenders}
    for r in range(rounds):
        for name in contenders:
            results[name].append(run_child(name, steps, seq, batch, bf16, profile and r == 0 and name in CONTENDERS))
    summary = {}
    for name, runs in results.items():
        summary[name] = {
            "median_step_s": statistics.median(x["median_step_s"] for x in runs),
            "step_s": [t for x in runs for t in x["step_s"]], "round_step_s": [x["median_step_s"] for x in runs],
            "peak_rss_mb": statistics.median(x["peak_rss_mb"] for x in runs),
            "final_loss": runs[0]["losses"][-1], "val_loss": runs[0]["val_loss"], "losses": runs[0]["losses"],
            "profile": runs[0].get("profile"), "tokens_per_step": runs[0]["tokens_per_step"],
            "parameters": runs[0]["parameters"],
        }
    ours, peer = summary["llmkernels"], summary["torch"]
    summary["speedup"] = peer["median_step_s"] / ours["median_step_s"]
    summary["rss_ratio"] = ours["peak_rss_mb"] / peer["peak_rss_mb"]
    summary["final_loss_rel_diff"] = abs(ours["final_loss"] - peer["final_loss"]) / peer["final_loss"]
    summary["val_loss_rel_diff"] = abs(ours["val_loss"] - peer["val_loss"]) / peer["val_loss"]
    summary["max_step_loss_rel_diff"] = max(abs(a - b) / b for a, b in zip(ours["losses"], peer["losses"]))
    summary["config"] = {"preset": "small", "seq": seq, "batch": batch, "steps": steps, "rounds": rounds, "bf16": bf16}
    return summary


def format_report(s: dict) -> str:
    c = s["config"]
    lines = [f"training benchmark: small preset ({s['torch']['parameters']:,} parameters), seq {c['seq']}, batch {c['batch']}, "
             f"{c['steps']} steps, {c['rounds']} round(s), {'bf16 autocast' if c['bf16'] else 'fp32'}"]
    for name in CONTENDERS + ((CHECKPOINTED,) if CHECKPOINTED in s else ()):
        x = s[name]
        lines.append(f"  --ops {name:<11} {x['tokens_per_step'] / x['median_step_s']:10,.0f} tokens/s   peak RSS {x['peak_rss_mb']:8,.0f} MB"
                     f"   final train loss {x['final_loss']:.4f}   val loss {x['val_loss']:.4f}")
    lines.append(f"  tokens/s ratio (llmkernels / torch): {s['speedup']:.2f}x")
    if c["rounds"] > 1:  # the spread: each round's own ratio (the rounds are interleaved)
        per_round = [t / o for t, o in zip(s["torch"]["round_step_s"], s["llmkernels"]["round_step_s"])]
        lines.append("    per round: " + ", ".join(f"{r:.2f}x" for r in per_round) + "   (median step s: torch "
                     + "/".join(f"{t:.2f}" for t in s["torch"]["round_step_s"]) + ", llmkernels "
                     + "/".join(f"{t:.2f}" for t in s["llmkernels"]["round_step_s"]) + ")")
    lines.append(f"  peak RSS ratio (llmkernels / torch): {s['rss_ratio']:.2f}x")
    if CHECKPOINTED in s:
        lines.append(f"  with --checkpoint-activations: peak RSS {s[CHECKPOINTED]['peak_rss_mb'] / s['torch']['peak_rss_mb']:.2f}x "
                     f"torch's, tokens/s {s['torch']['median_step_s'] / s[CHECKPOINTED]['median_step_s']:.2f}x torch's")
    lines.append(f"  loss agreement: final train {s['final_loss_rel_diff']:.2%}, val {s['val_loss_rel_diff']:.2%}, "
                 f"worst step {s['max_step_loss_rel_diff']:.2%} (tolerance {LOSS_TOLERANCE:.0%})")
    for name in CONTENDERS:
        if s[name]["profile"]:
            lines.append(f"\n  where one step's time goes, --ops {name}:\n{s[name]['profile']}")
    return "\n".join(lines)


def harness_rows(s: dict) -> tuple[list[str], list]:
    """The comparison in the harness's row format (llmkernels.bench.results.Row) and its lines: each
    contender's step time over every measured step of every round (median, p20, p80), its peak RSS,
    and the speed-up and memory ratio against --ops torch, per round."""
    from llmkernels.bench.results import Row
    from llmkernels.bench.stats import ratios, summarize

    c = s["config"]
    shape = f"small S={c['seq']} batch={c['batch']} steps={c['steps']} {'bf16' if c['bf16'] else 'fp32'}"
    target = 1.6 if c["bf16"] else 1.25
    rows, lines = [], [f"  training step {shape} (each contender a fresh process per round)"]
    peer = s["torch"]
    for name in CONTENDERS + ((CHECKPOINTED,) if CHECKPOINTED in s else ()):
        t = summarize(s[name]["step_s"])
        provider = f"--ops {name}"
        rows += [Row("training", provider, "train step", "seconds", shape, t.median, t.p20, t.p80),
                 Row("training", provider, "train step", "peak_mb", shape, *[s[name]["peak_rss_mb"]] * 3)]
        lines.append(f"      {provider:<44} {t.median * 1e3:.0f} ms ({t.p20 * 1e3:.0f}-{t.p80 * 1e3:.0f}) per step, "
                     f"peak RSS {s[name]['peak_rss_mb']:,.0f} MB")
        if name == "torch":
            continue
        r = summarize(ratios(peer["round_step_s"], s[name]["round_step_s"]))
        rows.append(Row("training", provider, "train step", "speedup_vs:--ops torch", shape, r.median, r.p20, r.p80))
        goal = ""
        if name == "llmkernels":
            rows.append(Row("training", provider, "train step", "target_vs:--ops torch", shape, target, target, target))
            goal = f"   target >= {target}x: {'met' if r.median >= target else 'NOT met'}"
        lines.append(f"      speed-up {provider} vs --ops torch{'':<14} {r.median:.2f}x ({r.p20:.2f}-{r.p80:.2f}){goal}; "
                     f"peak RSS {s[name]['peak_rss_mb'] / peer['peak_rss_mb']:.2f}x (target <= 0.65x)")
    return lines, rows


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_training_llmkernels_vs_torch(bf16):
    """Timed in fresh processes (no pytest-benchmark row: its fixture would time this process)."""
    from benchmarks.common import record

    if why := emulated_bf16(bf16):
        pytest.skip(why)
    steps = int(os.environ.get("LLMKERNELS_BENCH_TRAIN_STEPS", "24"))
    s = compare(steps, rounds=1, bf16=bf16, profile=False, checkpointing=True)
    print(format_report(s))
    record(*harness_rows(s))
    assert s["final_loss_rel_diff"] < LOSS_TOLERANCE and s["val_loss_rel_diff"] < LOSS_TOLERANCE


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ops", default="llmkernels")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--checkpointing", action="store_true", help="also run ours with --checkpoint-activations")
    p.add_argument("--breakdown", action="store_true",
                   help="only the memory breakdown: the floor and what a step adds, per contender (fresh processes)")
    p.add_argument("--json", default=None, help="also write the summary here")
    args = p.parse_args()
    if args.child:
        _child(args)
        return
    if why := emulated_bf16(args.bf16):
        sys.exit(why)
    if args.breakdown:
        from benchmarks.training_memory import format_breakdown, median_of

        from llmkernels.training import data

        data.load_corpus(None)
        runs = {ops: [run_child(ops, 0, args.seq, args.batch, args.bf16, False, breakdown=True) for _ in range(args.rounds)]
                for ops in CONTENDERS}
        print(format_breakdown([median_of(runs[ops]) for ops in CONTENDERS]))
        return
    s = compare(args.steps, args.seq, args.batch, args.rounds, args.bf16, profile=True, checkpointing=args.checkpointing)
    print(format_report(s))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(s, f, indent=1)
    if s["final_loss_rel_diff"] >= LOSS_TOLERANCE or s["val_loss_rel_diff"] >= LOSS_TOLERANCE:
        sys.exit("loss curves differ by more than 2%")


if __name__ == "__main__":
    sys.path.insert(0, ROOT)  # benchmarks.common
    main()
