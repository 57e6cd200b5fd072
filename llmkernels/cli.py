"""Command line: `llmkernels <command>` or `python -m llmkernels <command>`.

  info     what was built and which backend each op would use
  tour     every op on every present backend against the reference
  train    train a GPT (default: the tiny preset on the Python standard library), or an encoder (MLM)
  sample   generate text from a run
  finetune-classify  fine-tune the encoder to tell which stdlib package a snippet comes from
  demo     the whole story: a GPT teacher, a distilled student, an MLM encoder, a classifier, their reports
  bench    every op against its peers: a table, benchmarks/results/<device>.csv and plots
  distill  distil a trained GPT into a smaller one
  translate-train, translate   an encoder-decoder on number words, and its translations (cli_translate.py)
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import sys

# flag: (TrainConfig field, type, help). The default each help line shows is read from the
# presets and dataclasses below, so it cannot drift; None-valued defaults say what None means.
TRAIN_FLAGS = {
    "--model": ("architecture", str, "what to train: a GPT (decoder) or a bidirectional encoder"),
    "--objective": ("objective", str, "next-token prediction (clm, the GPT's) or masked-language modelling (mlm, the "
                                      "encoder's); default: the model's"),
    "--preset": ("preset", str, "model size and training defaults"),
    "--data": ("data", str, "folder of .py/.txt files to train on; default: the Python standard library's own sources"),
    "--tokenizer": ("tokenizer", str, "byte-level BPE trained on the data, or raw bytes"),
    "--vocab-size": ("vocab_size", int, "BPE vocabulary to train (the model takes the size reached)"),
    "--seq-len": ("seq_len", int, "tokens per training sequence; default: the preset's context"),
    "--batch-size": ("batch_size", int, "sequences per micro-batch per process (--objective mlm: twice the "
                                        "preset's)"),
    "--grad-accum": ("grad_accum", int, "micro-batches per optimizer step"),
    "--steps": ("steps", int, "optimizer steps: the length of the learning-rate schedule"),
    "--lr": ("lr", float, "peak learning rate (AdamW)"),
    "--min-lr-ratio": ("min_lr_ratio", float, "final learning rate as a fraction of --lr (cosine floor)"),
    "--warmup-steps": ("warmup_steps", int, "linear warm-up steps; default: steps // 10"),
    "--weight-decay": ("weight_decay", float, "AdamW weight decay of the matrices"),
    "--grad-clip": ("grad_clip", float, "clip the gradient norm to this (0: off)"),
    "--seed": ("seed", int, "seed of the initialisation and of the data order"),
    "--log-every": ("log_every", int, "log train loss and tokens/s every N steps"),
    "--eval-every": ("eval_every", int, "validate and sample every N steps"),
    "--eval-batches": ("eval_batches", int, "validation batches per evaluation"),
    "--save-every": ("save_every", int, "checkpoint every N steps; default: at each evaluation and at the end"),
    "--sample-tokens": ("sample_tokens", int, "tokens sampled at each evaluation"),
    "--ops": ("ops", str, "llmkernels' fused ops, or PyTorch's own functions (the baseline)"),
    "--backend": ("backend", str, "backend of the llmkernels ops (auto: cpp on a CPU when built, triton/cuda on a GPU)"),
    "--device": ("device", str, "where to train (auto: CUDA when present)"),
}
MODEL_FLAGS = {
    "--d-model": ("d_model", int, "model width"),
    "--n-layer": ("n_layer", int, "transformer blocks"),
    "--n-head": ("n_head", int, "query heads"),
    "--n-kv-head": ("n_kv_head", int, "key/value heads (GQA when fewer than --n-head)"),
    "--mlp-hidden": ("mlp_hidden", int, "SwiGLU hidden width"),
    "--positional": ("positional", str, "position encoding"),
}


def _choices() -> dict:
    import llmkernels
    from llmkernels.models import PRESETS
    from llmkernels.models.gpt_config import POSITIONAL
    from llmkernels.nn import OPS
    from llmkernels.training.config import DEVICES, OBJECTIVES, TOKENIZERS

    return {"preset": sorted(PRESETS), "tokenizer": TOKENIZERS, "ops": OPS, "device": DEVICES,
            "architecture": tuple(OBJECTIVES), "objective": ("clm", "mlm"),
            "backend": ("auto",) + llmkernels.BACKEND_NAMES, "positional": POSITIONAL}


def _default_text(dest: str) -> str | None:
    """The default of a train/model flag, per preset where the presets differ."""
    from llmkernels.models import PRESETS as MODEL_PRESETS
    from llmkernels.models.gpt_config import GPTConfig
    from llmkernels.training.config import TRAIN_PRESETS, TrainConfig

    train_fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    if dest == "objective":
        return None  # the model's own: the help text says so
    if dest in train_fields:
        values = {p: TRAIN_PRESETS[p].get(dest, train_fields[dest]) for p in TRAIN_PRESETS}
    else:
        model_default = {f.name: f.default for f in dataclasses.fields(GPTConfig)}[dest]
        values = {p: MODEL_PRESETS[p].get(dest, model_default) for p in MODEL_PRESETS}
    if any(v is None for v in values.values()):
        return None  # the help text says what None means
    if len(set(values.values())) == 1:
        return str(next(iter(values.values())))
    return ", ".join(f"{v} for {p}" for p, v in values.items())


def _add_train_flags(p: argparse.ArgumentParser, skip=(), defaults=None) -> None:
    """train's flags on ``p``, less those in ``skip``; ``defaults`` (dest: value) overrides the
    default a help line shows (a command with defaults of its own over the presets')."""
    choices = _choices()
    for flag, (dest, kind, text) in {**TRAIN_FLAGS, **MODEL_FLAGS}.items():
        if flag in skip:
            continue
        default = (defaults or {}).get(dest, _default_text(dest))
        help_text = text + (f" (default: {default})" if default is not None else "")
        metavar = "{" + ",".join(choices[dest]) + "}" if dest in choices else "DIR" if dest == "data" else dest.upper()
        if dest in choices:
            help_text += f"; one of {', '.join(choices[dest])}"
        # No argparse `choices`: the config checks the values and says so in one line.
        p.add_argument(flag, dest=dest, type=kind, default=None, metavar=metavar, help=help_text)
    p.add_argument("--bf16", action="store_const", const=True, default=None,
                   help="bf16 autocast (default: off, float32)")
    p.add_argument("--fsdp", action="store_const", const=True, default=None,
                   help="shard parameters, gradients and optimizer state with FSDP2 across torchrun's processes "
                        "(default: off; several processes use DDP)")
    p.add_argument("--checkpoint-activations", dest="checkpoint_activations", action="store_const", const=True,
                   default=None, help="recompute each block's activations in the backward: less memory, more time "
                                      "(default: off)")
    p.add_argument("--untied", dest="tie_embeddings", action="store_const", const=False, default=None,
                   help="separate output projection (default: tied to the embedding)")
    p.add_argument("--out", default=None, metavar="DIR", help="run directory (default: runs/<preset>-<date>-<time>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint (default: start a new run)")
    p.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                   help="stop after this step, as if interrupted (default: run all --steps)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar; the end-of-run report is still printed (default: show it)")


def _add_sample_flags(p: argparse.ArgumentParser) -> None:
    from llmkernels.nn import OPS

    p.add_argument("--run", required=True, metavar="DIR", help="run directory written by `llmkernels train` (required)")
    p.add_argument("--prompt", default="", help="text to continue (default: empty, start from end-of-text)")
    p.add_argument("--tokens", type=int, default=200, help="tokens to generate (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="sampling temperature, 0 for greedy (default: %(default)s)")
    p.add_argument("--top-k", type=int, default=40,
                   help="sample among the k most likely tokens, 0 for all (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    p.add_argument("--ops", default=None, choices=OPS,
                   help="run the model on llmkernels' ops or PyTorch's own (default: the run's)")


def _given(args) -> dict:
    given = {dest: getattr(args, dest, None) for dest, _, _ in TRAIN_FLAGS.values()}
    for flag in ("bf16", "fsdp", "checkpoint_activations"):
        given[flag] = getattr(args, flag)
    model = {dest: getattr(args, dest) for dest, _, _ in MODEL_FLAGS.values() if getattr(args, dest) is not None}
    if args.tie_embeddings is not None:
        model["tie_embeddings"] = False
    given["model"] = model or None
    return given


def _train(args) -> int:
    from llmkernels.extras import require

    require("train", f"llmkernels {args.command}")
    from llmkernels.training import loop, report
    from llmkernels.training.config import TrainingError

    if args.objective == "classify":
        raise TrainingError("--objective classify is llmkernels finetune-classify's; train pre-trains with clm or mlm")
    config = loop.resolve_config(_given(args), args.out, args.resume)
    result = loop.train(config, out=args.out, resume=args.resume, stop_at=args.stop_at, quiet=args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:
        print(report.summary(result["run_dir"], result["sample"]))
    return 0


def _add_distill_flags(p: argparse.ArgumentParser) -> None:
    from llmkernels.training.config import DISTILL_DEFAULTS as DEFAULTS

    p.add_argument("--teacher", required=True, metavar="RUN_DIR", help="the trained teacher's run directory (required)")
    p.add_argument("--temperature", type=float, default=DEFAULTS["temperature"],
                   help="softmax temperature of both models' soft targets (default: %(default)s)")
    p.add_argument("--beta", type=float, default=DEFAULTS["beta"],
                   help="0: forward KL(teacher || student), 1: reverse KL, between: generalised JSD (default: %(default)s)")
    p.add_argument("--hard-weight", type=float, default=DEFAULTS["hard_weight"],
                   help="weight of the next-token cross-entropy against the soft part (default: %(default)s)")
    p.add_argument("--offline-topk", type=int, default=None, metavar="K",
                   help="cache K log-probabilities per token once (the teacher's top K/2 and an unbiased "
                        "sample of the rest), then train without the teacher (default: off, the teacher runs each step)")
    p.add_argument("--offline-exact", type=int, default=None, metavar="N",
                   help="with --offline-topk K: how many of the K slots hold the teacher's top tokens exactly, the "
                        "rest sampled (default: K/2; K: the plain top K, whose lumped tail biases the student)")
    p.add_argument("--init-from-teacher", action="store_true",
                   help="start the student from every other teacher layer when the shapes allow (default: off)")


def _distill(args) -> int:
    from llmkernels.extras import require

    require("train", "llmkernels distill")
    from llmkernels.training import distill, distill_report

    options = distill.DistillOptions(args.teacher, args.temperature, args.beta, args.hard_weight, args.offline_topk,
                                     args.init_from_teacher, offline_exact=args.offline_exact)
    result = distill.distill(options, _given(args), args.out, resume=args.resume, stop_at=args.stop_at, quiet=args.quiet)
    if "student_kd" in result:
        print(distill_report.summary(result))
        print(f"report: {os.path.join(args.out, 'report.json')}, {os.path.join(args.out, 'report.png')}")
    return 0


def _add_classify_flags(p: argparse.ArgumentParser) -> None:
    from llmkernels.models.encoder_config import POOLING

    _add_train_flags(p, skip=("--model", "--objective"), defaults={"lr": 1e-3, "steps": 200, "eval_every": 100})
    p.add_argument("--init", default=None, metavar="RUN_DIR",
                   help="the MLM run (llmkernels train --model encoder) to start from: its configuration, tokenizer "
                        "and weights (default: none, the tiny encoder from scratch)")
    p.add_argument("--pooling", default=None, choices=POOLING,
                   help="the classifier reads the mean of the token states or the first's (default: mean)")


def _finetune_classify(args) -> int:
    from llmkernels.extras import require

    require("train", "llmkernels finetune-classify")
    from llmkernels.training import classify, classify_report

    result = classify.finetune(args.init, _given(args), args.out, resume=args.resume, stop_at=args.stop_at,
                               quiet=args.quiet, pooling=args.pooling)
    if "accuracy" in result:
        print(classify_report.summary(result))
        print(f"report: {os.path.join(args.out, 'report.json')}, {os.path.join(args.out, 'confusion.png')}")
    return 0


def _add_demo_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, metavar="DIR",
                   help="folder of the demo's runs (default: runs/demo-<date>-<time>)")
    p.add_argument("--seed", type=int, default=0, help="seed of every run (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars; the reports are still printed (default: show them)")


def _demo(args) -> int:
    from llmkernels.extras import require

    require("train", "llmkernels demo")
    from llmkernels.training import demo

    print(demo.summary(demo.run(args.out, seed=args.seed, quiet=args.quiet)))
    return 0


def _sample(args) -> int:
    from llmkernels.extras import require

    require("train", "llmkernels sample")
    import torch

    from llmkernels.models import GPT, GPTConfig
    from llmkernels.training import checkpoint, loop, tokenizer, validation
    from llmkernels.training.config import TrainingError

    saved = loop.read_run_config(args.run)
    if isinstance(saved.get("train"), dict) and saved["train"].get("architecture", "gpt") != "gpt":
        raise TrainingError(f"{args.run!r} is an encoder run: only a GPT samples text")
    try:
        model_config = GPTConfig.from_dict(saved["model"])
        tok = tokenizer.load(f"{args.run}/tokenizer.json")
    except (KeyError, TypeError, ValueError, OSError) as e:
        raise TrainingError(f"{args.run!r} is not a usable run: {e}") from None
    model_config.ops = args.ops or model_config.ops
    model = GPT(model_config)
    checkpoint.load(args.run, model)
    if args.tokens <= 0 or args.temperature < 0 or args.top_k < 0:
        raise TrainingError("--tokens must be positive, --temperature and --top-k >= 0")
    torch.manual_seed(args.seed)
    print(validation.sample_text(model, tok, args.prompt, args.tokens, args.seed, args.temperature, args.top_k or None))
    return 0


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each subcommand's parser (for its own usage line on errors)."""
    from llmkernels import __version__

    parser = argparse.ArgumentParser(prog="llmkernels", description="Fused transformer kernels for PyTorch.")
    parser.add_argument("--version", action="version", version=f"llmkernels {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{info,tour,train,demo,sample,distill,finetune-classify,translate-train,translate,bench}")
    helps = {
        "info": "what was built and which backend each op would use, and why",
        "tour": "run every op on every present backend against the reference",
        "train": "train a GPT (or, with --model encoder, pre-train an encoder with MLM) on the llmkernels ops",
        "demo": "the whole story on the Python standard library: pre-train a GPT teacher, distil a student, pre-train "
                "an encoder (MLM), fine-tune a classifier from it and from scratch; print the reports",
        "sample": "generate text from a trained run",
        "distill": "distil a trained GPT into a smaller one, against the same student trained from scratch",
        "finetune-classify": "fine-tune an encoder (from an MLM run, or from scratch) to tell which standard-library "
                             "package a snippet of source comes from",
        "bench": "time every op against its peers: a table, benchmarks/results/<device>.csv and plots",
    }
    subparsers = {}
    for name, text in helps.items():
        subparsers[name] = commands.add_parser(
            name, help=text, description=text[0].upper() + text[1:] + ".")
    _add_train_flags(subparsers["train"])
    _add_demo_flags(subparsers["demo"])
    _add_sample_flags(subparsers["sample"])
    _add_train_flags(subparsers["distill"])
    _add_distill_flags(subparsers["distill"])
    _add_classify_flags(subparsers["finetune-classify"])
    from llmkernels.bench import runner

    runner.add_arguments(subparsers["bench"])

    from llmkernels import cli_translate

    subparsers.update(cli_translate.add_parsers(commands, helps))
    return parser, subparsers


def _unrecognized(extras: list[str], parser: argparse.ArgumentParser) -> str:
    message = f"unrecognized arguments: {' '.join(extras)}"
    known = [option for action in parser._actions for option in action.option_strings]
    for flag in (e.split("=")[0] for e in extras if e.startswith("-")):
        close = difflib.get_close_matches(flag, known, n=1)
        if close:
            message += f" (did you mean {close[0]}?)"
            break
    return message


def _check_requested_backend() -> None:
    """A bad LLMKERNELS_BACKEND is one line here, not a traceback from deep inside an op."""
    from llmkernels import backends
    from llmkernels.training.config import TrainingError

    try:
        backends.requested_backend()
    except ValueError as e:
        raise TrainingError(str(e)) from None


def main(argv=None) -> int:
    parser, subparsers = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        subparsers[args.command].error(_unrecognized(extras, subparsers[args.command]))

    from llmkernels.extras import MissingExtra
    from llmkernels.training.config import TrainingError

    try:
        _check_requested_backend()
        if args.command == "info":
            import llmkernels

            llmkernels.info()
        elif args.command == "tour":
            from llmkernels import tour

            tour.run()
        elif args.command == "train":
            return _train(args)
        elif args.command == "demo":
            return _demo(args)
        elif args.command == "sample":
            return _sample(args)
        elif args.command == "distill":
            return _distill(args)
        elif args.command == "finetune-classify":
            return _finetune_classify(args)
        elif args.command == "bench":
            from llmkernels.bench import runner

            return runner.main(args)
        elif args.command.startswith("translate"):
            from llmkernels import cli_translate

            return cli_translate.run(args)
    except (TrainingError, MissingExtra) as e:
        print(f"llmkernels {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"llmkernels {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
