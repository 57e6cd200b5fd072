"""The distillation driver's speed: its student steps with the fused losses against the same driver
on ``--backend reference``, and the offline top-K student against the online one.

Contenders (each a fresh process per round, rounds interleaved: fused, reference, offline, fused, ...):

* ``fused``: ``llmkernels distill`` online with the default backend (the fused
  ``linear_distillation_loss``: neither model's full logits exist);
* ``reference``: the same with ``--backend reference`` (every op's plain PyTorch specification);
* ``offline top-K``: ``--offline-topk K`` on the default backend: the student trains on the
  teacher's cached top-K log-probabilities (``linear_topk_distillation_loss``), no teacher forward.
  The cache is built once by the parent, before the rounds, and opened by every child.

Each child trains the distilled student (the driver's own ``distill.prepare`` and the training
loop) and reports the loop's per-step times (steps 1-2 warm up and are dropped) and its peak RSS
(``resource.getrusage``). Targets (issue 10): fused >= 1.2x the reference's steps/s with a lower
peak RSS; offline top-K faster than online. Ratios are taken round by round (the harness's
``ratios``) and summarised as median (p20-p80).

    python benchmarks/bench_distill.py [--rounds 5] [--steps 30] [--teacher RUN_DIR] [--json F]
    pytest benchmarks/bench_distill.py -s       # one round at a tiny size (a smoke test, no figures)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTENDERS = ("fused", "reference", "offline top-K")
SPEED_TARGET = 1.2  # fused / reference steps/s


def _options(args, contender: str):
    from llmkernels.training import distill

    return distill.DistillOptions(args.teacher, offline_topk=args.k if contender == "offline top-K" else None)


def _given(args, contender: str) -> dict:
    """The student's flags: those of `llmkernels distill --steps N` (defaults otherwise), evaluated
    once at the end on one batch, so the loop's step times are the steps'."""
    return {"steps": args.steps, "batch_size": args.batch_size, "seed": 0, "log_every": 1, "eval_every": args.steps,
            "eval_batches": 1, "sample_tokens": 1, "backend": "reference" if contender == "reference" else None}


def _child(args) -> None:
    """In a fresh process: one contender's distilled student; prints BENCH_RESULT."""
    from llmkernels.training import distill, loop

    config, plan, _ = distill.prepare(_options(args, args.contender), _given(args, args.contender), args.work, quiet=True)
    run_dir = tempfile.mkdtemp(prefix="student-", dir=args.work)
    loop.train(config, out=run_dir, quiet=True, plan=plan)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    tokens_per_step = config.context * config.batch_size * config.grad_accum
    step_s = [tokens_per_step / r["tokens_per_s"] for r in rows[2:] or rows]  # log_every 1: one row per step
    shutil.rmtree(run_dir)
    print("BENCH_RESULT " + json.dumps({"step_s": step_s, "peak_rss_mb": peak_rss_mb, "final_loss": rows[-1]["train_loss"],
                                        "student": config.preset, "tokens_per_step": tokens_per_step}))


def _run_child(args, contender: str, work: str) -> dict:
    from benchmarks.common import child_result

    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--contender", contender, "--work", work,
           "--teacher", args.teacher, "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--k", str(args.k)]
    return child_result(cmd, f"distillation child ({contender})", cwd=ROOT)


def _teacher(args, work: str) -> str:
    """The given teacher run, or a default-preset teacher trained for ``--teacher-steps`` (its
    weights do not change a step's cost)."""
    if args.teacher:
        return args.teacher
    from llmkernels.training import config as configs, loop

    run = os.path.join(work, "teacher")
    config = configs.build("tiny", steps=args.teacher_steps, batch_size=args.batch_size, eval_every=args.teacher_steps,
                           eval_batches=1, sample_tokens=1, seed=0)
    loop.train(config, out=run, quiet=True)
    return run


def compare(args) -> dict:
    from llmkernels.bench.stats import ratios, summarize
    from llmkernels.training import distill

    work = tempfile.mkdtemp(prefix="bench-distill-")
    try:
        args.teacher = _teacher(args, work)
        folders = {name: os.path.join(work, name.replace(" ", "-")) for name in CONTENDERS}
        began = time.perf_counter()  # the top-K cache, once, here: no child pays for it
        distill.prepare(_options(args, "offline top-K"), _given(args, "offline top-K"), folders["offline top-K"], quiet=True)
        cache_s = time.perf_counter() - began
        runs = {name: [] for name in CONTENDERS}
        for _ in range(args.rounds):
            for name in CONTENDERS:
                runs[name].append(_run_child(args, name, folders[name]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {"config": {"rounds": args.rounds, "steps": args.steps, "batch_size": args.batch_size, "k": args.k,
                          "student": runs["fused"][0]["student"], "teacher_steps": args.teacher_steps},
               "topk_cache_s": cache_s}
    for name, results in runs.items():
        round_s = [summarize(r["step_s"]).median for r in results]
        step = summarize([t for r in results for t in r["step_s"]])
        summary[name] = {"round_step_s": round_s, "median_step_s": step.median, "p20_step_s": step.p20,
                         "p80_step_s": step.p80, "peak_rss_mb": summarize([r["peak_rss_mb"] for r in results]).median,
                         "final_loss": results[0]["final_loss"], "tokens_per_step": results[0]["tokens_per_step"]}
    for key, peer, ours in (("fused_vs_reference", "reference", "fused"), ("offline_vs_online", "fused", "offline top-K")):
        r = summarize(ratios(summary[peer]["round_step_s"], summary[ours]["round_step_s"]))
        summary[key] = {"median": r.median, "p20": r.p20, "p80": r.p80}
    summary["rss_fused_vs_reference"] = summary["fused"]["peak_rss_mb"] / summary["reference"]["peak_rss_mb"]
    return summary


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def format_report(s: dict) -> list[str]:
    c = s["config"]
    lines = [f"  distillation driver: {c['student']} student, batch {c['batch_size']}, {c['steps']} steps, "
             f"{c['rounds']} round(s), each contender a fresh process; top-{c['k']} cache built in {s['topk_cache_s']:.1f} s"]
    for name in CONTENDERS:
        x = s[name]
        lines.append(f"      {name:<14} {1 / x['median_step_s']:7.2f} steps/s   {x['median_step_s'] * 1e3:7.0f} ms/step "
                     f"({x['p20_step_s'] * 1e3:.0f}-{x['p80_step_s'] * 1e3:.0f})   peak RSS {x['peak_rss_mb']:7,.0f} MB   "
                     f"final loss {x['final_loss']:.3f}")
    f, o = s["fused_vs_reference"], s["offline_vs_online"]
    lines.append(f"      steps/s fused / reference     {f['median']:.2f}x ({f['p20']:.2f}-{f['p80']:.2f})   "
                 f"target >= {SPEED_TARGET}x: {_verdict(f['median'] >= SPEED_TARGET)}")
    lines.append(f"      peak RSS fused / reference    {s['rss_fused_vs_reference']:.2f}x   "
                 f"target < 1: {_verdict(s['rss_fused_vs_reference'] < 1)}")
    lines.append(f"      steps/s offline / online      {o['median']:.2f}x ({o['p20']:.2f}-{o['p80']:.2f})   "
                 f"target > 1: {_verdict(o['median'] > 1)}")
    return lines


def harness_rows(s: dict) -> list:
    """The figures as the harness's CSV rows (llmkernels.bench.results.Row)."""
    from llmkernels.bench.results import Row

    c = s["config"]
    shape = f"{c['student']} student batch={c['batch_size']} steps={c['steps']} K={c['k']}"
    rows = []
    for name in CONTENDERS:
        x = s[name]
        rows += [Row("distill", name, "train step", "seconds", shape, x["median_step_s"], x["p20_step_s"], x["p80_step_s"]),
                 Row("distill", name, "train step", "peak_mb", shape, *[x["peak_rss_mb"]] * 3)]
    for key, peer, ours in (("fused_vs_reference", "reference", "fused"), ("offline_vs_online", "fused", "offline top-K")):
        r = s[key]
        rows.append(Row("distill", ours, "train step", f"speedup_vs:{peer}", shape, r["median"], r["p20"], r["p80"]))
    return rows


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--contender", choices=CONTENDERS, help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: %(default)s)")
    p.add_argument("--steps", type=int, default=30, help="student steps per contender and round (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per step (default: %(default)s, the presets')")
    p.add_argument("--k", type=int, default=32, help="the offline student's top-K (default: %(default)s)")
    p.add_argument("--teacher", default=None, metavar="RUN_DIR",
                   help="a trained teacher run (default: train a default-preset teacher for --teacher-steps)")
    p.add_argument("--teacher-steps", type=int, default=20, help="(default: %(default)s)")
    p.add_argument("--json", default=None, help="also write the summary here")
    return p


def test_distill_fused_reference_offline():
    """A smoke test at a tiny size, one round (no pytest-benchmark row: the children are timed)."""
    from benchmarks.common import record

    args = parser().parse_args(["--rounds", "1", "--steps", "4", "--batch-size", "4", "--teacher-steps", "2"])
    s = compare(args)
    for name in CONTENDERS:
        assert len(s[name]["round_step_s"]) == 1 and s[name]["median_step_s"] > 0 and s[name]["peak_rss_mb"] > 0
    record(format_report(s), harness_rows(s))


def main() -> None:
    args = parser().parse_args()
    if args.child:
        _child(args)
        return
    s = compare(args)
    print("\n".join(format_report(s)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(s, f, indent=1)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)  # benchmarks.common
    main()
