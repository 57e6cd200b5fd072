"""translate-train and translate: the data split, a tiny run, its report, resume, and the bad inputs."""

import json
import os

import pytest

from llmkernels import cli
from llmkernels.training import translate_data

TINY = ["--preset", "nano", "--vocab-size", "300", "--train-pool", "400", "--batch-size", "16", "--eval-every", "20",
        "--log-every", "5", "--beam", "2", "--quiet"]


@pytest.fixture(autouse=True)
def _few_numbers(monkeypatch):
    # 0..2999 instead of 0..999,999: the same split rule, written out in a second.
    monkeypatch.setattr(translate_data, "NUMBERS", 3000)
    monkeypatch.setattr(translate_data, "SHORT", 100)
    monkeypatch.setattr(translate_data, "FRACTIONS", {**translate_data.FRACTIONS, "numbers": {"test": 0.02, "val": 0.02}})


def train(out, *extra):
    return cli.main(["translate-train", "--out", str(out), *TINY, *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny en-de run shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("translate")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMKERNELS_CACHE", str(root / "cache"))
        mp.setattr(translate_data, "NUMBERS", 3000)
        mp.setattr(translate_data, "SHORT", 100)
        mp.setattr(translate_data, "FRACTIONS", {**translate_data.FRACTIONS, "numbers": {"test": 0.02, "val": 0.02}})
        assert train(root / "run", "--steps", "60", "--lr", "1e-2") == 0
    return root / "run"


def test_the_split_is_disjoint_covers_every_range_and_is_stable():
    sides = translate_data.number_split(train_pool=10_000)
    sets = {name: set(numbers) for name, numbers in sides.items()}
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"] and not sets["val"] & sets["test"]
    assert sets["train"] | sets["val"] | sets["test"] == set(range(3000))
    assert 20 < len(sets["test"]) < 100 and 20 < len(sets["val"]) < 100  # about 2% each
    assert {n // 1000 for n in sets["test"]} == {0, 1, 2}  # by hash, not by range
    pool = translate_data.number_split(train_pool=200)["train"]
    assert len(pool) == 200 and set(pool) <= sets["train"] and pool == sorted(pool)
    short = {n for n in sets["train"] if n < 100}
    assert short <= set(pool) and max(pool) > 2000  # every short number, then a uniform draw
    assert translate_data.number_split(train_pool=100) == translate_data.number_split(train_pool=100)


def test_short_numbers_are_repeated_up_to_their_share_of_the_draws():
    times = translate_data.repeats(list(range(10_000)))  # 10, 90, 900 and 9,000 numbers of 1..4 digits
    assert times == {1: 20, 2: 3, 3: 1, 4: 1}  # 2% of 10,000 draws: 200 = 10 x 20, 270 = 90 x 3
    pool = translate_data.number_split(train_pool=1000)["train"]
    pairs = translate_data.number_pairs("en-de", train_pool=1000)
    counts = {}
    for n in pool:
        counts[len(str(n))] = counts.get(len(str(n)), 0) + 1
    assert len(pairs["train"]) == sum(c * translate_data.repeats(pool)[d] for d, c in counts.items()) > len(pool)
    zero = translate_data.repeats(pool)[1]
    assert zero > 1 and pairs["train"].count(("zero", "null")) == zero
    assert len(pairs["test"]) == len(set(pairs["test"]))  # the split itself is untouched


def test_the_tokenizer_writes_a_word_alone_as_inside_a_sentence(tmp_path):
    from llmkernels.training.tokenizer import BPETokenizer, load

    texts = ["seven hundred and twelve", "twelve thousand", "three hundred and seven"] * 20
    tok = BPETokenizer.train(texts, 300, prefix_space=True)
    assert tok.encode("seven hundred and twelve")[-len(tok.encode("twelve")):] == tok.encode("twelve")
    assert tok.encode("seven hundred")[:len(tok.encode("seven"))] == tok.encode("seven")
    tok.save(str(tmp_path / "tokenizer.json"))
    for text in ("twelve", "seven hundred and twelve", "zwölf ♥"):
        assert tok.decode(tok.encode(text)) == load(str(tmp_path / "tokenizer.json")).decode(tok.encode(text)) == text


def test_a_tsv_is_split_by_its_source_sentences(tmp_path):
    lines = [f"s{i % 400}\tt{i}" for i in range(1200)]  # each source three times
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(lines) + "\n")
    sides = translate_data.tsv_pairs(str(path))
    sources = {name: {s for s, _ in pairs} for name, pairs in sides.items()}
    assert not sources["train"] & sources["test"] and not sources["val"] & sources["test"]
    assert sum(map(len, sides.values())) == 1200


def test_a_tiny_run_learns_and_writes_its_report(trained, capsys):
    rows = [json.loads(line) for line in open(trained / "metrics.jsonl")]
    assert rows[-1]["train_loss"] < 0.6 * rows[0]["train_loss"]  # it learns
    assert [r["step"] for r in rows if "val_loss" in r] == [20, 40, 60]
    assert {"config.json", "metrics.jsonl", "loss.png", "tokenizer.json", "checkpoint", "report.json"} <= set(os.listdir(trained))
    report = json.loads((trained / "report.json").read_text())
    assert set(report["test"]) == {"greedy", "beam"}
    for method in ("greedy", "beam"):
        scores = report["test"][method]
        assert 0.0 <= scores["exact_match"] <= 1.0 and 0.0 <= scores["chrf"] <= 100.0 and 0.0 <= scores["bleu"] <= 100.0
    assert report["test_sentences"] == len(translate_data.number_split(1)["test"]) and report["beam"] == 2
    assert report["examples"][0]["reference"]


def test_translate_prints_the_translation_on_its_last_line(trained, capsys):
    assert cli.main(["translate", "--run", str(trained), "seven hundred and twelve"]) == 0
    beam = capsys.readouterr().out.splitlines()[-1]
    assert cli.main(["translate", "--run", str(trained), "--greedy", "seven hundred and twelve"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] is not None
    assert cli.main(["translate", "--run", str(trained), "--beam", "1", "seven hundred and twelve"]) == 0
    assert isinstance(beam, str)
    # Characters the tokenizer never saw are bytes to it: translated, not crashed.
    assert cli.main(["translate", "--run", str(trained), "sieben ♥ 北京 ünd"]) == 0


def test_exact_resume(tmp_path):
    assert train(tmp_path / "whole", "--steps", "12", "--eval-every", "6") == 0
    assert train(tmp_path / "parts", "--steps", "12", "--eval-every", "6", "--stop-at", "6") == 0
    assert not (tmp_path / "parts" / "report.json").exists()
    assert train(tmp_path / "parts", "--steps", "12", "--eval-every", "6", "--resume") == 0

    def losses(run):
        return [(r["step"], r["train_loss"]) for r in map(json.loads, open(run / "metrics.jsonl"))]

    assert losses(tmp_path / "parts") == losses(tmp_path / "whole")

    def scores(run):  # the decoding times aside
        report = json.loads((run / "report.json").read_text())["test"]
        return {method: {k: v for k, v in s.items() if k != "seconds"} for method, s in report.items()}

    assert scores(tmp_path / "parts") == scores(tmp_path / "whole")


def test_fine_tuning_starts_from_another_runs_weights(trained, tmp_path):
    assert train(tmp_path / "fr", "--pair", "en-fr", "--init", str(trained), "--steps", "4", "--eval-every", "4") == 0
    saved = json.loads((tmp_path / "fr" / "config.json").read_text())["model"]
    pretrained = json.loads((trained / "config.json").read_text())["model"]
    lengths = ("max_src_len", "max_tgt_len")  # French through the German run's tokenizer: more tokens
    assert {k: v for k, v in saved.items() if k not in lengths} == {k: v for k, v in pretrained.items() if k not in lengths}
    assert all(saved[k] >= pretrained[k] for k in lengths) and saved["max_tgt_len"] > pretrained["max_tgt_len"]
    assert (tmp_path / "fr" / "tokenizer.json").read_text() == (trained / "tokenizer.json").read_text()


def test_fine_tuning_is_compared_with_the_same_model_trained_from_scratch(trained, tmp_path):
    from llmkernels.training import translate_report

    out = tmp_path / "fr"
    flags = ["--pair", "en-fr", "--init", str(trained), "--compare-scratch", "--steps", "6", "--eval-every", "6"]
    assert train(out, *flags) == 0
    report = json.loads((out / "report.json").read_text())
    scratch = json.loads((out / "scratch" / "report.json").read_text())
    assert report["scratch"]["test"] == scratch["test"] and report["scratch"]["steps"] == scratch["steps"] == 6
    assert report["init_beats_scratch"] == translate_report.beats(report["test"]["beam"], scratch["test"]["beam"])
    assert report["init"] == scratch["tokenizers_from"] == str(trained) and "init" not in scratch
    saved, other = (json.loads((d / "config.json").read_text()) for d in (out, out / "scratch"))
    for key in ("model", "train", "corpus_key"):  # the same model, tokenizers, data, seed and steps
        assert saved[key] == other[key], key
    assert (out / "scratch" / "tokenizer.json").read_text() == (trained / "tokenizer.json").read_text()
    finished = (out / "scratch" / "metrics.jsonl").stat().st_mtime_ns
    assert train(out, *flags, "--resume") == 0  # both finished: the scratch run is reused, not trained again
    assert (out / "scratch" / "metrics.jsonl").stat().st_mtime_ns == finished


def test_the_scratch_plan_takes_inits_shape_but_not_its_weights(trained):
    import torch

    from llmkernels.models import Seq2SeqConfig
    from llmkernels.training import translate

    options = translate.TranslateOptions(pair="en-fr", init=str(trained), preset="nano", compare_scratch=True)
    config = Seq2SeqConfig.from_dict(json.loads((trained / "config.json").read_text())["model"])
    pretrained = translate.load_model(str(trained))[0].state_dict()
    loaded = translate.TranslatePlan(options).model(config).state_dict()
    fresh = translate.TranslatePlan(options, scratch=True).model(config).state_dict()
    assert all(torch.equal(loaded[name], pretrained[name]) for name in pretrained)
    assert not any(torch.equal(fresh[name], pretrained[name]) for name in pretrained if name.endswith("proj.weight"))


def test_the_verdict_is_beam_exact_match_then_chrf():
    from llmkernels.training.translate_report import beats

    assert beats({"exact_match": 0.5, "chrf": 10.0}, {"exact_match": 0.4, "chrf": 90.0})
    assert beats({"exact_match": 0.5, "chrf": 60.0}, {"exact_match": 0.5, "chrf": 59.0})
    assert not beats({"exact_match": 0.5, "chrf": 60.0}, {"exact_match": 0.5, "chrf": 60.0})


def test_a_tsv_trains_with_separate_vocabularies(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("".join(f"the cat {i}\tdie katze {i}\n" for i in range(300)))
    assert train(tmp_path / "run", "--data", str(path), "--separate-vocab", "--steps", "4", "--eval-every", "4") == 0
    assert {"src_tokenizer.json", "tgt_tokenizer.json", "report.json"} <= set(os.listdir(tmp_path / "run"))
    assert cli.main(["translate", "--run", str(tmp_path / "run"), "the cat 7"]) == 0


def one_line_error(capsys, argv, *needles):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def test_bad_inputs_are_one_line(trained, tmp_path, capsys):
    one_line_error(capsys, ["translate-train", "--pair", "en-xx", "--out", str(tmp_path / "x")],
                   "unknown language pair 'en-xx'", "de", "fr")
    one_line_error(capsys, ["translate-train", "--pair", "english", "--out", str(tmp_path / "x")], "SRC-TGT")
    one_line_error(capsys, ["translate", "--run", str(trained), "   "], "empty input")
    one_line_error(capsys, ["translate", "--run", str(trained)], "empty input")
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    (gpt / "config.json").write_text(json.dumps({"train": {}, "model": {"vocab_size": 300}, "corpus_key": "k"}))
    one_line_error(capsys, ["translate", "--run", str(gpt), "one"], "not a translation run", "GPT")
    one_line_error(capsys, ["translate", "--run", str(tmp_path / "missing"), "one"], "does not exist")
    one_line_error(capsys, ["translate-train", "--out", str(tmp_path / "y"), "--init", str(gpt)], "not a translation run")
    one_line_error(capsys, ["translate-train", "--out", str(tmp_path / "z"), "--data", str(tmp_path / "none.tsv")],
                   "is not a file")
    one_line_error(capsys, ["translate", "--run", str(trained), "--beam", "0", "one"], "--beam")
    one_line_error(capsys, ["translate-train", "--out", str(tmp_path / "w"), "--compare-scratch"], "--init")
    one_line_error(capsys, ["translate", "--run", str(trained), " ".join(["one"] * 200)], "at most")


def test_scores_of_a_perfect_corpus_stay_within_their_ranges():
    from llmkernels.training.translate_report import scores

    text = ["dreihundertzwölf", "sieben", "neunzehn tausend"]
    got = scores(text, text)
    assert got["exact_match"] == 1.0 and got["chrf"] == 100.0 and got["bleu"] == 100.0
