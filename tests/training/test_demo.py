"""`llmkernels demo` tells the whole story (here with tiny models on a tiny corpus) and prints every report."""

from llmkernels import cli
from llmkernels.training import demo
from tests.training.conftest import make_corpus

TINY = {"tokenizer": "bytes", "seq_len": 32, "batch_size": 4, "eval_batches": 2, "sample_tokens": 8,
        "model": {"d_model": 32, "n_layer": 2, "n_head": 4, "n_kv_head": 2, "mlp_hidden": 64}}


def test_the_story_runs_and_prints_every_report(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    result = demo.run(str(tmp_path / "demo"), quiet=True, steps={"teacher": 6, "student": 4, "mlm": 4, "classify": 4},
                      flags={**TINY, "data": corpus})
    text = demo.summary(result)
    for line in ("teacher", "student_kd", "student_scratch", "masked-token val perplexity", "from scratch",
                 "majority baseline", "over scratch"):
        assert line in text, text
    assert result["classify_mlm"]["init"].endswith("mlm") and result["classify_scratch"]["init"] is None
    for name in ("teacher", "distill/report.json", "mlm", "classify-mlm/report.json", "classify-scratch/confusion.png"):
        assert (tmp_path / "demo" / name).exists()


def test_demo_refuses_a_folder_that_holds_its_runs(tmp_path, capsys):
    (tmp_path / "demo" / "teacher").mkdir(parents=True)
    assert cli.main(["demo", "--out", str(tmp_path / "demo"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "already exists: give the demo a new --out" in err and len(err.strip().splitlines()) == 1
