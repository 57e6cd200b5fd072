"""The transformers Trainer examples run end to end at tiny sizes (the README's commands run the full ones)."""

import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("datasets")
pytest.importorskip("accelerate")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def examples_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    yield
    for name in ("stdlib_text", "bert_classify_trainer", "llama_trainer"):
        sys.modules.pop(name, None)


def test_bert_classifier_with_trainer(examples_path, capsys):
    import bert_classify_trainer

    result = bert_classify_trainer.main(["--steps", "3", "--per-package", "16", "--length", "32", "--batch", "8"])
    assert 0.0 <= result["accuracy"] <= 1.0 and 0.0 < result["majority_accuracy"] <= 1.0
    assert result["classes"] == 8
    assert "test accuracy" in capsys.readouterr().out


def test_llama_with_trainer_and_apply_llmkernels(examples_path):
    import llama_trainer

    result = llama_trainer.main(["--steps", "4", "--per-package", "16", "--length", "32", "--batch", "4"])
    assert all(math.isfinite(result[k]) for k in ("first_loss", "last_loss", "eval_loss"))
    assert "fused_linear_cross_entropy" in result["patched"] and "rope" in result["patched"]
