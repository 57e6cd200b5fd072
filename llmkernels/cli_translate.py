"""The translation commands of the command line: ``translate-train`` and ``translate`` (see cli.py)."""

from __future__ import annotations

import argparse

# flag: (TrainConfig field, type, help); their defaults are translate-train's (training/translate.py).
TRAIN_FLAGS = {
    "--steps": ("steps", int, "optimizer steps: the length of the learning-rate schedule"),
    "--batch-size": ("batch_size", int, "sentence pairs per micro-batch per process"),
    "--lr": ("lr", float, "peak learning rate (AdamW)"),
    "--warmup-steps": ("warmup_steps", int, "linear warm-up steps"),
    "--seed": ("seed", int, "seed of the initialisation and of the data order"),
    "--log-every": ("log_every", int, "log train loss and tokens/s every N steps"),
    "--eval-every": ("eval_every", int, "validate and translate two validation sentences every N steps"),
    "--ops": ("ops", str, "llmkernels' fused ops, or PyTorch's own functions (the baseline): llmkernels or torch"),
    "--backend": ("backend", str, "backend of the llmkernels ops (auto: cpp on a CPU when built)"),
    "--device": ("device", str, "where to train: auto, cpu or cuda (auto: CUDA when present)"),
}


def add_parsers(commands, helps: dict) -> dict[str, argparse.ArgumentParser]:
    from llmkernels.training.translate_config import TRAIN_DEFAULTS, TranslateOptions

    defaults = TranslateOptions()
    helps["translate-train"] = "train an encoder-decoder to translate number words (or a TSV of sentence pairs)"
    helps["translate"] = "translate a sentence with a run of translate-train"
    p = commands.add_parser("translate-train", help=helps["translate-train"],
                            description=helps["translate-train"][0].upper() + helps["translate-train"][1:] + ".")
    p.add_argument("--pair", default=defaults.pair, metavar="SRC-TGT",
                   help="the languages num2words writes the numbers 0..999,999 in (default: %(default)s)")
    p.add_argument("--data", default=None, metavar="TSV",
                   help="train on this file of source<TAB>target lines instead of number words (default: none)")
    p.add_argument("--init", default=None, metavar="RUN_DIR",
                   help="start from this translation run's weights and tokenizers: fine-tuning (default: from scratch)")
    p.add_argument("--compare-scratch", action="store_true",
                   help="with --init: train the same model from scratch too (same data, seed and steps, in "
                        "OUT/scratch) and report whether fine-tuning beat it (default: off)")
    p.add_argument("--preset", default=defaults.preset, metavar="{nano,small,base}", help="model size (default: %(default)s)")
    p.add_argument("--vocab-size", type=int, default=defaults.vocab_size,
                   help="BPE vocabulary trained on the training side (default: %(default)s)")
    p.add_argument("--separate-vocab", action="store_true",
                   help="one BPE per language and separate embeddings (default: one shared by both)")
    p.add_argument("--train-pool", type=int, default=defaults.train_pool,
                   help="training-side numbers written out and drawn from (default: %(default)s)")
    p.add_argument("--beam", type=int, default=defaults.beam, help="beam width of the report (default: %(default)s)")
    p.add_argument("--length-penalty", type=float, default=defaults.length_penalty,
                   help="GNMT length penalty alpha of beam search, 0 for none (default: %(default)s)")
    for flag, (dest, kind, text) in TRAIN_FLAGS.items():
        default = TRAIN_DEFAULTS.get(dest, {"seed": 0, "ops": "llmkernels", "backend": "auto", "device": "auto"}.get(dest))
        p.add_argument(flag, dest=dest, type=kind, default=None, help=f"{text} (default: {default})")
    p.add_argument("--out", default=None, metavar="DIR", help="run directory (required)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--stop-at", type=int, default=None, metavar="STEP", help="stop after this step, as if interrupted")
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: show it)")

    t = commands.add_parser("translate", help=helps["translate"], description=helps["translate"] + ".")
    t.add_argument("--run", required=True, metavar="DIR", help="run directory written by translate-train (required)")
    t.add_argument("text", nargs="?", default=None, help="the sentence to translate (num2words' text for number runs)")
    t.add_argument("--greedy", action="store_true", help="greedy decoding (default: beam search)")
    t.add_argument("--beam", type=int, default=None, help="beam width (default: the run's)")
    t.add_argument("--length-penalty", type=float, default=None, help="length penalty alpha (default: the run's)")
    t.add_argument("--ops", default=None, help="llmkernels or torch (default: the run's)")
    return {"translate-train": p, "translate": t}


def translate_train(args) -> int:
    from llmkernels.extras import require

    require("translate", "llmkernels translate-train")
    from llmkernels.training import translate, translate_report
    from llmkernels.training.translate_config import TranslateOptions

    options = TranslateOptions(args.pair, args.data, args.init, args.preset, args.vocab_size, not args.separate_vocab,
                               args.train_pool, args.beam, args.length_penalty, args.compare_scratch)
    given = {dest: getattr(args, dest) for dest, _, _ in TRAIN_FLAGS.values()}
    result = translate.translate_train(options, given, args.out, resume=args.resume, stop_at=args.stop_at,
                                       quiet=args.quiet)
    print(f"run dir:          {result['run_dir']} (step {result['step']})")
    if "report" in result:
        print(translate_report.summary(result["report"]))
        print(f"report: {translate.report_path(args.out)}")
    return 0


def translate(args) -> int:
    from llmkernels.extras import require

    require("translate", "llmkernels translate")
    import torch

    from llmkernels.models.seq2seq_decode import beam_search, greedy
    from llmkernels.nn import OPS
    from llmkernels.training import translate as runs, translate_data
    from llmkernels.training.config import TrainingError

    if args.ops is not None and args.ops not in OPS:
        raise TrainingError(f"unknown ops {args.ops!r}; choose one of {', '.join(OPS)}")
    model, saved = runs.load_model(args.run, args.ops)  # refuses a run of another model kind first
    text = (args.text or "").strip()
    if not text:
        raise TrainingError("empty input: give the sentence to translate, e.g. \"seven hundred and twelve\"")
    options = saved["plan"]["translate"]
    beam = args.beam if args.beam is not None else options["beam"]
    alpha = args.length_penalty if args.length_penalty is not None else options["length_penalty"]
    if beam < 1 or not alpha >= 0:
        raise TrainingError(f"--beam must be >= 1 and --length-penalty >= 0; got {beam}, {alpha}")
    src_tok, tgt_tok = translate_data.load_tokenizers(args.run)
    ids = src_tok.encode(text)
    if len(ids) > model.config.max_src_len:
        raise TrainingError(f"the input is {len(ids)} tokens; this model reads at most {model.config.max_src_len}")
    src = torch.tensor([ids])
    hyps = greedy(model, src) if args.greedy else beam_search(model, src, beam=beam, length_penalty=alpha)
    print(tgt_tok.decode(hyps[0]))
    return 0


def run(args) -> int:
    return translate_train(args) if args.command == "translate-train" else translate(args)

