"""``llmkernels demo`` (``make demo``): the whole story on the Python standard library, in one folder.

1. pre-train the GPT teacher (``train``, the tiny preset);
2. distil it into the nano student with the driver's default temperature, beta and hard weight, and
   train the same student from scratch (``distill``);
3. pre-train the encoder with masked-language modelling (``train --model encoder``);
4. fine-tune the package classifier from that encoder and from scratch (``finetune-classify``);
5. print the reports: the teacher's and both students' validation perplexities, the encoder's
   masked-token perplexity, and each classifier's accuracy against the majority baseline.

``STEPS`` is sized so the whole story fits in about ten minutes on a 2-core CPU (the first run also
trains the BPE tokenizer, once, into the cache). Each step is the command the README shows.
"""

from __future__ import annotations

import math
import os
from datetime import datetime

STEPS = {"teacher": 200, "student": 150, "mlm": 200, "classify": 200}  # the classifier: as measured for its targets
ENCODER_PRESET = "tiny"


def _banner(text: str, quiet: bool) -> None:
    if not quiet:
        print(f"\n== {text}", flush=True)


def run(out: str | None = None, seed: int = 0, quiet: bool = False, steps: dict | None = None,
        flags: dict | None = None) -> dict:
    """Runs the story in ``out`` (default ``runs/demo-<date>-<time>``); returns every report.
    ``steps`` overrides STEPS; ``flags`` (train's, as config fields) go to the teacher, the encoder
    and the scratch classifier (the tests' tiny models and corpus)."""
    from llmkernels.training import classify, config as configs, distill, loop, report

    steps = {**STEPS, **(steps or {})}
    out = out or os.path.join("runs", f"demo-{datetime.now():%Y%m%d-%H%M%S}")
    runs = {name: os.path.join(out, name) for name in ("teacher", "distill", "mlm", "classify-mlm", "classify-scratch")}
    for name, path in runs.items():
        if os.path.exists(path):
            raise configs.TrainingError(f"{path!r} already exists: give the demo a new --out")

    _banner(f"1/4 the GPT teacher: llmkernels train --steps {steps['teacher']} --out {runs['teacher']}", quiet)
    flags = flags or {}
    teacher = configs.build("tiny", steps=steps["teacher"], eval_every=steps["teacher"], seed=seed, **flags)
    loop.train(teacher, out=runs["teacher"], quiet=quiet)

    _banner(f"2/4 distillation: llmkernels distill --teacher {runs['teacher']} --steps {steps['student']} "
            f"--out {runs['distill']}", quiet)
    kd = distill.distill(distill.DistillOptions(runs["teacher"]),
                         {"steps": steps["student"], "eval_every": steps["student"], "seed": seed}, runs["distill"],
                         quiet=quiet)

    _banner(f"3/4 the encoder: llmkernels train --model encoder --steps {steps['mlm']} --out {runs['mlm']}", quiet)
    mlm = configs.build(ENCODER_PRESET, architecture="encoder", steps=steps["mlm"], eval_every=steps["mlm"], seed=seed,
                        **flags)
    loop.train(mlm, out=runs["mlm"], quiet=quiet)

    _banner(f"4/4 the classifier: llmkernels finetune-classify --init {runs['mlm']} --steps {steps['classify']} "
            f"--out {runs['classify-mlm']}, and without --init", quiet)
    given = {"steps": steps["classify"], "seed": seed}
    from_mlm = classify.finetune(runs["mlm"], given, runs["classify-mlm"], quiet=quiet)
    scratch = classify.finetune(None, {**given, **flags, "preset": ENCODER_PRESET}, runs["classify-scratch"], quiet=quiet)
    mlm_rows = [r for r in report.read_metrics(runs["mlm"]) if "val_loss" in r]
    return {"out": out, "distill": kd, "mlm_val_perplexity": math.exp(mlm_rows[-1]["val_loss"]),
            "classify_mlm": from_mlm, "classify_scratch": scratch}


def summary(result: dict) -> str:
    from llmkernels.training import classify_report, distill_report

    a, b = result["classify_mlm"], result["classify_scratch"]
    lines = ["", "== the reports", distill_report.summary(result["distill"]),
             f"encoder (MLM)    masked-token val perplexity {result['mlm_val_perplexity']:.2f}",
             classify_report.summary(a), classify_report.summary(b),
             f"pre-training bought {a['accuracy'] - b['accuracy']:+.3f} accuracy over scratch; "
             f"{a['accuracy'] - a['majority_accuracy']:+.3f} over the majority baseline",
             f"everything is in {result['out']} (report.json, report.png, confusion.png, loss.png per run)"]
    return "\n".join(lines)
