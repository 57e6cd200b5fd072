"""Does masked-language pre-training transfer to the package classifier? Issue 10's target, per seed.

For each seed: ``llmkernels train --model encoder --objective mlm --steps M`` (default preset and
settings), then ``llmkernels finetune-classify --steps F`` from that run and from scratch, both
with their defaults. Prints one row a seed (majority baseline, the two accuracies, the MLM run's
masked-token perplexity) and whether the targets hold: from the MLM run, accuracy >= majority +
0.20 and >= the scratch run's; from scratch, >= majority + 0.10. These are quality runs, not
timings: minutes a seed on a 2-core CPU, any load.

    python -m benchmarks.classify_quality --seeds 0 1 2 3 4 [--mlm-steps 200] [--steps 200] [--out DIR]

``--mlm FIELD=VALUE`` / ``--finetune FIELD=VALUE`` (repeatable, values parsed as JSON when they
parse) override a training config field of either stage, to compare a setting against the
defaults; the table is about the defaults only when neither is given. ``--json PATH`` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

MLM_MARGIN, SCRATCH_MARGIN = 0.20, 0.10


def _fields(pairs: list[str]) -> dict:
    fields = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            fields[name] = json.loads(value)
        except json.JSONDecodeError:
            fields[name] = value
    return fields


def one_seed(seed: int, out: str, mlm_steps: int, steps: int, mlm_flags: dict, finetune_flags: dict) -> dict:
    from llmkernels.training import classify, config as configs, loop, report

    began = time.perf_counter()
    mlm_dir = os.path.join(out, f"seed{seed}-mlm")
    mlm = configs.build("tiny", architecture="encoder", steps=mlm_steps, eval_every=mlm_steps, seed=seed, **mlm_flags)
    loop.train(mlm, out=mlm_dir, quiet=True)
    given = {"steps": steps, "seed": seed, **finetune_flags}
    from_mlm = classify.finetune(mlm_dir, given, os.path.join(out, f"seed{seed}-from-mlm"), quiet=True)
    scratch = classify.finetune(None, given, os.path.join(out, f"seed{seed}-scratch"), quiet=True)
    val_loss = [r for r in report.read_metrics(mlm_dir) if "val_loss" in r][-1]["val_loss"]
    majority, a, b = scratch["majority_accuracy"], from_mlm["accuracy"], scratch["accuracy"]
    return {"seed": seed, "majority": majority, "from_mlm": a, "scratch": b, "mlm_val_perplexity": math.exp(val_loss),
            "from_mlm_macro_f1": from_mlm["macro_f1"], "scratch_macro_f1": scratch["macro_f1"],
            "holds": a >= majority + MLM_MARGIN and a >= b and b >= majority + SCRATCH_MARGIN,
            "seconds": time.perf_counter() - began}


def table(rows: list[dict]) -> str:
    lines = [f"{'seed':>4}  {'majority':>8}  {'from MLM':>8}  {'scratch':>8}  {'MLM-scratch':>11}  {'MLM ppl':>8}  targets",
             "-" * 64]
    for r in rows:
        lines.append(f"{r['seed']:>4}  {r['majority']:>8.3f}  {r['from_mlm']:>8.3f}  {r['scratch']:>8.3f}  "
                     f"{r['from_mlm'] - r['scratch']:>+11.3f}  {r['mlm_val_perplexity']:>8.1f}  "
                     f"{'hold' if r['holds'] else 'MISSED'}")
    if rows:
        mean = lambda k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
        lines.append(f"{'mean':>4}  {mean('majority'):>8.3f}  {mean('from_mlm'):>8.3f}  {mean('scratch'):>8.3f}  "
                     f"{mean('from_mlm') - mean('scratch'):>+11.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="seeds to run (default 0 1 2 3 4)")
    p.add_argument("--mlm-steps", type=int, default=200, help="MLM pre-training steps (default 200)")
    p.add_argument("--steps", type=int, default=200, help="fine-tuning steps, both runs (default 200)")
    p.add_argument("--out", default=None, help="folder of the runs (default: a fresh temporary folder)")
    p.add_argument("--mlm", action="append", default=[], metavar="FIELD=VALUE", help="override an MLM config field")
    p.add_argument("--finetune", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a fine-tuning config field (both runs)")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="classify-quality-")
    rows = []
    for seed in args.seeds:
        rows.append(one_seed(seed, out, args.mlm_steps, args.steps, _fields(args.mlm), _fields(args.finetune)))
        r = rows[-1]
        print(f"seed {seed}: majority {r['majority']:.3f}, from MLM {r['from_mlm']:.3f}, scratch {r['scratch']:.3f} "
              f"({r['seconds']:.0f} s)", file=sys.stderr, flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
    print(table(rows))
    print(f"runs in {out}")
    return 0 if all(r["holds"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
