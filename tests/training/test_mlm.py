"""MLM pre-training of the encoder on the training loop: the masking recipe, a run whose loss falls,
exact resume, the mask token in the run's tokenizer, and the --model/--objective mismatches."""

import json
import os

import pytest
import torch

from llmkernels import cli
from llmkernels.training import mlm, tokenizer
from tests.training.conftest import TINY_FLAGS


def train(corpus, out, *extra):
    return cli.main(["train", "--model", "encoder", "--data", corpus, "--out", str(out), *TINY_FLAGS, *extra])


def losses(run):
    return [(r["step"], r["train_loss"], r.get("val_loss")) for r in map(json.loads, open(os.path.join(run, "metrics.jsonl")))]


def test_masking_follows_bert():
    tok = tokenizer.with_mask(tokenizer.ByteTokenizer())
    ids = torch.randint(0, 256, (64, 256), generator=torch.Generator().manual_seed(0))
    ids[:, ::50] = tok.eot_id
    inputs, labels = mlm.mask_tokens(ids, tok, torch.Generator().manual_seed(1))
    chosen = labels != -100
    assert torch.equal(labels[chosen], ids[chosen]) and not chosen[ids == tok.eot_id].any()
    assert abs(chosen[ids != tok.eot_id].float().mean().item() - mlm.MASK_FRACTION) < 0.01
    masked = (inputs == tok.mask_id) & chosen
    kept = (inputs == ids) & chosen
    assert abs(masked.sum().item() / chosen.sum().item() - 0.8) < 0.02
    assert abs(kept.sum().item() / chosen.sum().item() - 0.1) < 0.02  # (plus random draws of the same id)
    assert torch.equal(inputs[~chosen], ids[~chosen]) and (inputs != tok.mask_id)[~chosen].all()


def test_mlm_run_learns_and_its_tokenizer_has_the_mask(tmp_path, capsys):
    # The head's bias starts at the token frequencies, so what the loss can still lose is context:
    # a text whose every byte its neighbours tell.
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(4):
        (corpus / f"mod{i}.py").write_text("the quick brown fox jumps over the lazy dog\n" * 60)
    run = tmp_path / "mlm"
    assert train(str(corpus), run, "--steps", "80", "--eval-every", "20", "--batch-size", "8", "--lr", "1e-2") == 0
    val = [r[2] for r in losses(run) if r[2] is not None]
    assert len(val) == 4 and all(b < a for a, b in zip(val, val[1:])) and val[-1] < val[0] - 0.5, val
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["architecture"] == "encoder" and saved["train"]["objective"] == "mlm"
    tok = tokenizer.load(str(run / "tokenizer.json"))
    assert tok.mask_id == 257 and saved["model"]["vocab_size"] == tok.vocab_size == 258
    assert "val perplexity" in capsys.readouterr().out


def test_mlm_resume_is_exact(corpus, tmp_path):
    flags = ["--steps", "8", "--log-every", "1", "--eval-every", "3", "--save-every", "2", "--seed", "5"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert train(corpus, full, *flags) == 0
    assert train(corpus, part, *flags, "--stop-at", "3") == 0
    assert train(corpus, part, "--resume") == 0
    assert losses(part) == losses(full)
    assert (part / "checkpoint" / "model.safetensors").read_bytes() == (full / "checkpoint" / "model.safetensors").read_bytes()


@pytest.mark.parametrize("flags, message", [
    (["--objective", "mlm"], "--objective mlm does not train --model gpt: pass --model encoder"),
    (["--model", "encoder", "--objective", "clm"], "--objective clm does not train --model encoder: pass --model gpt"),
    (["--model", "encoder", "--objective", "classify"], "finetune-classify"),
])
def test_objective_and_model_mismatch_is_one_line(corpus, tmp_path, capsys, flags, message):
    assert cli.main(["train", "--data", corpus, "--out", str(tmp_path / "run"), *TINY_FLAGS, *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_resume_cannot_switch_model(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(corpus, run, "--steps", "2") == 0
    assert cli.main(["train", "--out", str(run), "--resume", "--model", "gpt"]) == 2
    assert "cannot resume: --model 'gpt' differs" in capsys.readouterr().err


def test_sample_refuses_an_encoder_run(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(corpus, run, "--steps", "2") == 0
    capsys.readouterr()
    assert cli.main(["sample", "--run", str(run)]) == 2
    err = capsys.readouterr().err
    assert "is an encoder run: only a GPT samples text" in err and len(err.strip().splitlines()) == 1


def test_the_head_bias_starts_at_the_token_frequencies():
    from llmkernels.models import Encoder, EncoderConfig

    model = Encoder(EncoderConfig(vocab_size=5, max_seq_len=8, d_model=8, n_layer=1, n_head=2, n_kv_head=1, mlp_hidden=8))
    mlm.init_output_bias(model, [0, 0, 0, 1, 3, 3], 5)
    expected = torch.log(torch.tensor([4.0, 2, 1, 3, 1]) / 11)  # add-one smoothed counts
    assert torch.allclose(model.mlm_bias, expected)
    assert Encoder(EncoderConfig(vocab_size=5, max_seq_len=8, d_model=8, n_layer=1, n_head=2, n_kv_head=1,
                                 mlp_hidden=8, num_labels=2)).mlm_bias is None  # a classifier has no MLM head


def test_mlm_takes_twice_the_presets_windows_unless_told():
    # 40% of the tokens scored a step, not all: the noisier gradient gets twice the windows.
    from llmkernels.training import config

    for preset, defaults in config.TRAIN_PRESETS.items():
        assert config.build(preset, architecture="encoder").batch_size == config.MLM_BATCH_FACTOR * defaults["batch_size"]
        assert config.build(preset).batch_size == defaults["batch_size"]
        assert config.build(preset, architecture="encoder", objective="classify").batch_size == defaults["batch_size"]
    assert config.build("tiny", architecture="encoder", batch_size=4).batch_size == 4
