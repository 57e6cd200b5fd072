"""finetune-classify: the data split by file, the classifier end to end (from an MLM run and from
scratch) with its report, and every unusable --init refused in one line before any work."""

import json
import os

import pytest

from llmkernels import cli
from llmkernels.training import classify_data, classify_report
from tests.training.conftest import TINY_FLAGS, make_corpus

FEW = ["--steps", "6", "--eval-every", "3", "--batch-size", "4", "--quiet"]


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlm")
    with pytest.MonkeyPatch.context() as patch:  # module scope: the per-test cache fixture is not there yet
        patch.setenv("LLMKERNELS_CACHE", str(root / "cache"))
        corpus = make_corpus(root / "corpus")
        assert cli.main(["train", "--model", "encoder", "--data", corpus, *TINY_FLAGS, "--steps", "4",
                         "--out", str(root / "run")]) == 0
    return {"run": str(root / "run"), "cache": str(root / "cache"), "corpus": corpus}


@pytest.fixture
def cache_of(mlm_run, monkeypatch):
    monkeypatch.setenv("LLMKERNELS_CACHE", mlm_run["cache"])


def test_split_is_by_file_deterministic_and_covers_every_package():
    first, second = classify_data.load(), classify_data.load()
    assert first == second
    assert not set(first.train.files) & set(first.test.files)
    for split in (first.train, first.test):
        assert len(split.texts) == len(split.labels) == len(split.files)
        assert set(split.labels) == set(range(len(classify_data.PACKAGES)))  # every package on both sides
        assert all(f.split("/")[0] == first.label_names[label] for f, label in zip(split.files, split.labels))
    with pytest.raises(ValueError, match="split must be"):
        first.split("validation")


def test_scores_and_majority():
    report = classify_report.scores([0, 0, 1, 2], [0, 1, 1, 2], 3)
    assert report["accuracy"] == 0.75 and report["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert report["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert classify_report.majority([1, 1, 0, 0, 2], [0, 1, 1]) == (0, 1 / 3)  # a tie goes to the lowest label


def _check_report(out, init):
    report = json.loads((out / "report.json").read_text())
    for name in ("accuracy", "macro_f1", "majority_accuracy"):
        assert 0.0 <= report[name] <= 1.0
    assert report["init"] == init and report["labels"] == list(classify_data.PACKAGES)
    assert (out / "confusion.png").stat().st_size > 0 and (out / "loss.png").exists()
    n = len(report["labels"])
    assert sum(map(sum, report["confusion"])) == report["test_snippets"] and len(report["confusion"]) == n
    return report


def test_from_an_mlm_run_end_to_end(mlm_run, cache_of, tmp_path, capsys):
    out = tmp_path / "ft"
    assert cli.main(["finetune-classify", "--init", mlm_run["run"], *FEW, "--out", str(out)]) == 0
    _check_report(out, os.path.abspath(mlm_run["run"]))
    assert "majority baseline" in capsys.readouterr().out
    saved = json.loads((out / "config.json").read_text())
    pretrained = json.loads(open(os.path.join(mlm_run["run"], "config.json")).read())
    assert saved["model"] == {**pretrained["model"], "num_labels": len(classify_data.PACKAGES)}
    assert (out / "tokenizer.json").read_text() == open(os.path.join(mlm_run["run"], "tokenizer.json")).read()


def test_from_scratch_stops_and_resumes_exactly(mlm_run, cache_of, tmp_path):
    flags = ["finetune-classify", "--data", mlm_run["corpus"], "--tokenizer", "bytes", *TINY_FLAGS[2:], *FEW,
             "--log-every", "1"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert cli.main([*flags, "--out", str(whole)]) == 0
    assert cli.main([*flags, "--out", str(part), "--stop-at", "4"]) == 0
    assert not (part / "report.json").exists()
    assert cli.main(["finetune-classify", "--out", str(part), "--resume", "--quiet"]) == 0
    rows = [[json.loads(r) for r in open(d / "metrics.jsonl")] for d in (whole, part)]
    assert [(r["step"], r["train_loss"], r.get("val_loss")) for r in rows[0]] == \
        [(r["step"], r["train_loss"], r.get("val_loss")) for r in rows[1]]
    assert _check_report(part, None)["accuracy"] == _check_report(whole, None)["accuracy"]


def test_resume_of_a_run_that_is_not_a_classifier_is_one_line(mlm_run, cache_of, capsys):
    assert cli.main(["finetune-classify", "--out", mlm_run["run"], "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is not a finetune-classify run" in err and len(err.strip().splitlines()) == 1


def _gpt_run(corpus, out):
    assert cli.main(["train", "--data", corpus, *TINY_FLAGS, "--steps", "2", "--out", str(out)]) == 0
    return str(out)


def _edited(run, tmp_path, edit):
    """A copy of the MLM run whose config.json ``edit`` changes."""
    import shutil

    copy = tmp_path / "edited"
    shutil.copytree(run, copy)
    saved = json.loads((copy / "config.json").read_text())
    edit(saved)
    (copy / "config.json").write_text(json.dumps(saved))
    return str(copy)


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("empty", "holds no run"),
    ("gpt", "is a GPT run: fine-tune from an encoder's MLM run"),
    ("unknown field", "its model does not fit the encoder"),
    ("other shape", "its weights do not fit the encoder"),
    ("no checkpoint", "holds no checkpoint"),
    ("conflicting flag", "--d-model comes from the --init run"),
])
def test_unusable_init_is_one_line_and_writes_nothing(mlm_run, cache_of, tmp_path, capsys, case, message):
    extra = []
    if case == "missing":
        init = str(tmp_path / "nowhere")
    elif case == "empty":
        init = str(tmp_path / "empty")
        os.makedirs(init)
    elif case == "gpt":
        init = _gpt_run(mlm_run["corpus"], tmp_path / "gpt")
    elif case == "unknown field":
        init = _edited(mlm_run["run"], tmp_path, lambda s: s["model"].update(experts=4))
    elif case == "other shape":
        init = _edited(mlm_run["run"], tmp_path, lambda s: s["model"].update(d_model=64, mlp_hidden=32))
    elif case == "no checkpoint":
        init = _edited(mlm_run["run"], tmp_path, lambda s: None)
        import shutil

        shutil.rmtree(os.path.join(init, "checkpoint"))
    else:
        init, extra = mlm_run["run"], ["--d-model", "48"]
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert cli.main(["finetune-classify", "--init", init, *FEW, *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert os.listdir(out) == ["keep.txt"]
