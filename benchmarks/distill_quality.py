"""The distillation driver's quality targets (issue 10), end to end through the command line:

1. a teacher: ``llmkernels train --steps 300`` (the default preset, tiny);
2. for each seed: ``llmkernels distill --teacher T --steps 200 --seed S`` with the driver's documented
   defaults (temperature, beta, hard weight): the distilled student's validation perplexity must be
   lower than the scratch student's (same preset, data, steps and seed);
3. the same with ``--offline-topk 32`` (the scratch student reused): its perplexity within 5% of the
   online student's.

Not a timing (it may run on a busy machine). Finished runs in ``--out`` are reused, so a stopped
check continues where it was; it prints one table and exits 1 when a target is missed.

    python benchmarks/distill_quality.py [--out runs/distill-quality] [--seeds 0 1 2] [--json F] [--teacher RUN]

``--teacher RUN`` reuses a teacher trained as step 1 says (or trains it there when RUN holds no
finished run), so several checks can share one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

OFFLINE_TOLERANCE = 0.05  # offline top-K perplexity <= 1.05x the online student's


def _finished(run_dir: str, steps: int) -> bool:
    from llmkernels.training import checkpoint
    from llmkernels.training.config import TrainingError

    try:
        return checkpoint.read_state(run_dir).get("step") == steps
    except TrainingError:
        return False


def _cli(argv: list[str]) -> None:
    from llmkernels import cli

    print("$ llmkernels " + " ".join(argv), flush=True)
    if cli.main(argv) != 0:
        sys.exit(f"failed: llmkernels {' '.join(argv)}")


def _distilled(teacher: str, out: str, seed: int, steps: int, extra: list[str]) -> dict:
    report = os.path.join(out, "report.json")
    if not os.path.exists(report):
        _cli(["distill", "--teacher", teacher, "--steps", str(steps), "--seed", str(seed), "--quiet", *extra, "--out", out])
    with open(report) as f:
        return json.load(f)


def run(args) -> dict:
    from llmkernels.training import distill

    teacher = args.teacher or os.path.join(args.out, "teacher")
    if not _finished(teacher, args.teacher_steps):
        _cli(["train", "--steps", str(args.teacher_steps), "--quiet", "--out", teacher]
             + (["--resume"] if os.path.exists(os.path.join(teacher, "config.json")) else []))
    results = {"teacher": teacher, "seeds": {}}
    for seed in args.seeds:
        online_dir, offline_dir = (os.path.join(args.out, f"seed-{seed}", kind) for kind in ("online", "offline"))
        online = _distilled(teacher, online_dir, seed, args.student_steps, [])
        os.makedirs(offline_dir, exist_ok=True)
        scratch = os.path.join(offline_dir, distill.SCRATCH)
        if not os.path.exists(scratch):  # the same scratch student (same config): reused, not trained twice
            os.symlink(os.path.abspath(os.path.join(online_dir, distill.SCRATCH)), scratch)
        offline = _distilled(teacher, offline_dir, seed, args.student_steps, ["--offline-topk", str(args.k)])
        row = {"teacher": online["teacher"]["val_perplexity"], "online": online["student_kd"]["val_perplexity"],
               "scratch": online["student_scratch"]["val_perplexity"], "offline": offline["student_kd"]["val_perplexity"],
               "options": online["options"]}
        row["online_beats_scratch"] = row["online"] < row["scratch"]
        row["offline_within"] = row["offline"] <= (1 + OFFLINE_TOLERANCE) * row["online"]
        results["seeds"][seed] = row
        print(format_row(seed, row), flush=True)
    results["met"] = all(r["online_beats_scratch"] and r["offline_within"] for r in results["seeds"].values())
    return results


def format_row(seed, r: dict) -> str:
    return (f"  seed {seed}: teacher {r['teacher']:8.2f}   distilled {r['online']:8.2f}   scratch {r['scratch']:8.2f}   "
            f"offline top-K {r['offline']:8.2f} ({r['offline'] / r['online'] - 1:+.1%} vs online)   "
            f"beats scratch: {'yes' if r['online_beats_scratch'] else 'NO'}   "
            f"offline within {OFFLINE_TOLERANCE:.0%}: {'yes' if r['offline_within'] else 'NO'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join("runs", "distill-quality"), help="the runs (default: %(default)s)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="student seeds (default: 0 1 2)")
    p.add_argument("--teacher-steps", type=int, default=300, help="(default: %(default)s)")
    p.add_argument("--student-steps", type=int, default=200, help="(default: %(default)s)")
    p.add_argument("--k", type=int, default=32, help="the offline student's top-K (default: %(default)s)")
    p.add_argument("--teacher", default=None, help="the teacher's run (default: OUT/teacher, trained when unfinished)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    results = run(args)
    print(f"validation perplexities (teacher from {args.teacher_steps} steps, students {args.student_steps} steps):")
    for seed, row in results["seeds"].items():
        print(format_row(seed, row))
    print("targets " + ("met" if results["met"] else "NOT met"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    sys.exit(0 if results["met"] else 1)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's llmkernels
    main()
