"""The classifier's report: accuracy, macro F1 and the majority-class baseline on the held-out
snippets, the confusion matrix (report.json, confusion.png)."""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

from llmkernels.models import Encoder, EncoderConfig
from llmkernels.training import checkpoint, loop
from llmkernels.training.classify import predict


def scores(truth: list[int], predicted: list[int], num_labels: int) -> dict:
    """accuracy, macro_f1 (over the labels seen in truth or predictions) and the confusion matrix
    (rows: true label, columns: predicted)."""
    confusion = [[0] * num_labels for _ in range(num_labels)]
    for t, p in zip(truth, predicted):
        confusion[t][p] += 1
    f1s = []
    for label in sorted(set(truth) | set(predicted)):
        hit = confusion[label][label]
        predicted_as = sum(row[label] for row in confusion)
        actual = sum(confusion[label])
        f1s.append(2 * hit / (predicted_as + actual) if predicted_as + actual else 0.0)
    accuracy = sum(t == p for t, p in zip(truth, predicted)) / len(truth)
    return {"accuracy": accuracy, "macro_f1": sum(f1s) / len(f1s), "confusion": confusion}


def majority(train_labels: list[int], test_labels: list[int]) -> tuple[int, float]:
    """The training set's most frequent label (the lowest on a tie) and its accuracy on the test set."""
    counts = collections.Counter(train_labels)
    label = min(counts, key=lambda k: (-counts[k], k))
    return label, sum(t == label for t in test_labels) / len(test_labels)


def write(out: str, plan, config) -> dict:
    saved = loop.read_run_config(out)
    model = Encoder(EncoderConfig.from_dict({**saved["model"], "ops": config.ops}))
    checkpoint.load(out, model)
    _, predicted = predict(model, plan.test_rows, plan.tokenizer.eot_id)
    test, names = plan.dataset.test, plan.dataset.label_names
    label, baseline = majority(plan.dataset.train.labels, test.labels)
    report = {**scores(test.labels, predicted, len(names)), "majority_accuracy": baseline,
              "majority_label": names[label], "init": os.path.abspath(plan.init.run_dir) if plan.init else None,
              "labels": list(names), "test_snippets": len(test), "train_snippets": len(plan.dataset.train),
              "steps": config.steps, "seed": config.seed, "run_dir": os.path.abspath(out)}
    Path(out, "report.json").write_text(json.dumps(report, indent=1))
    _plot(out, report)
    return report


def _plot(out: str, report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, confusion = report["labels"], report["confusion"]
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i, row in enumerate(confusion):
        for j, n in enumerate(row):
            if n:
                ax.text(j, i, str(n), ha="center", va="center", fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true package")
    ax.set_title(f"accuracy {report['accuracy']:.2f} (majority {report['majority_accuracy']:.2f})")
    fig.tight_layout()
    fig.savefig(Path(out, "confusion.png"), dpi=100)
    plt.close(fig)


def summary(report: dict) -> str:
    start = f"from {report['init']}" if report["init"] else "from scratch"
    return (f"classifier ({start}, {report['steps']} steps): accuracy {report['accuracy']:.3f}, "
            f"macro F1 {report['macro_f1']:.3f}; majority baseline {report['majority_accuracy']:.3f} "
            f"({report['majority_label']}) on {report['test_snippets']} held-out snippets")
