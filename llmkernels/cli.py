"""Command line: `llmkernels <command>` or `python -m llmkernels <command>`.

  info     what was built and which backend each op would use
  tour     every op on every present backend against the reference
  train    train a GPT (default: the tiny preset on the Python standard library)
  sample   generate text from a run
  demo     train the default model on the stdlib corpus and print a short report
"""

from __future__ import annotations

import argparse
import os
import sys

TRAIN_FLAGS = {  # flag: (TrainConfig field, type)
    "--preset": ("preset", str), "--data": ("data", str), "--tokenizer": ("tokenizer", str),
    "--vocab-size": ("vocab_size", int), "--seq-len": ("seq_len", int), "--batch-size": ("batch_size", int),
    "--grad-accum": ("grad_accum", int), "--steps": ("steps", int), "--lr": ("lr", float),
    "--min-lr-ratio": ("min_lr_ratio", float), "--warmup-steps": ("warmup_steps", int),
    "--weight-decay": ("weight_decay", float), "--grad-clip": ("grad_clip", float), "--seed": ("seed", int),
    "--log-every": ("log_every", int), "--eval-every": ("eval_every", int), "--eval-batches": ("eval_batches", int),
    "--save-every": ("save_every", int), "--sample-tokens": ("sample_tokens", int),
    "--ops": ("ops", str), "--backend": ("backend", str), "--device": ("device", str),
}
MODEL_FLAGS = {"--d-model": ("d_model", int), "--n-layer": ("n_layer", int), "--n-head": ("n_head", int),
               "--n-kv-head": ("n_kv_head", int), "--mlp-hidden": ("mlp_hidden", int),
               "--positional": ("positional", str)}


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    for flag, (dest, kind) in {**TRAIN_FLAGS, **MODEL_FLAGS}.items():
        p.add_argument(flag, dest=dest, type=kind, default=None)
    p.add_argument("--bf16", action="store_const", const=True, default=None, help="bf16 autocast")
    p.add_argument("--untied", dest="tie_embeddings", action="store_const", const=False, default=None,
                   help="separate output projection (default: tied to the embedding)")
    p.add_argument("--out", default=None, help="run dir (default runs/<preset>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--stop-at", type=int, default=None, help="stop after this step, as if interrupted")
    p.add_argument("--quiet", action="store_true", help="no progress bar (the end-of-run report is still printed)")


def _given(args) -> dict:
    given = {dest: getattr(args, dest) for dest, _ in TRAIN_FLAGS.values()}
    given["bf16"] = args.bf16
    model = {dest: getattr(args, dest) for dest, _ in MODEL_FLAGS.values() if getattr(args, dest) is not None}
    if args.tie_embeddings is not None:
        model["tie_embeddings"] = False
    given["model"] = model or None
    return given


def _train(args) -> int:
    from llmkernels.training import loop, report

    config = loop.resolve_config(_given(args), args.out, args.resume)
    result = loop.train(config, out=args.out, resume=args.resume, stop_at=args.stop_at, quiet=args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:
        print(report.summary(result["run_dir"], result["sample"]))
    return 0


def _sample(args) -> int:
    import torch

    from llmkernels.models import GPT, GPTConfig
    from llmkernels.training import checkpoint, loop, tokenizer
    from llmkernels.training.config import TrainingError

    saved = loop.read_run_config(args.run)
    try:
        model_config = GPTConfig.from_dict(saved["model"])
        tok = tokenizer.load(f"{args.run}/tokenizer.json")
    except (KeyError, TypeError, ValueError, OSError) as e:
        raise TrainingError(f"{args.run!r} is not a usable run: {e}") from None
    model_config.ops = args.ops or model_config.ops
    model = GPT(model_config)
    checkpoint.load(args.run, model)
    if args.tokens <= 0 or args.temperature < 0:
        raise TrainingError("--tokens must be positive and --temperature >= 0")
    torch.manual_seed(args.seed)
    print(loop.sample_text(model, tok, args.prompt, args.tokens, args.seed, args.temperature, args.top_k))
    return 0


def main(argv=None) -> int:
    from llmkernels.nn import OPS

    parser = argparse.ArgumentParser(prog="llmkernels", description="Fused transformer kernels.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="what was built and which backend each op would use")
    commands.add_parser("tour", help="run every op on every present backend and compare")
    _add_train_flags(commands.add_parser("train", help="train a GPT on the llmkernels ops"))
    _add_train_flags(commands.add_parser("demo", help="train the default model on the stdlib corpus, then report"))
    sample = commands.add_parser("sample", help="generate text from a trained run")
    sample.add_argument("--run", required=True)
    sample.add_argument("--prompt", default="")
    sample.add_argument("--tokens", type=int, default=200)
    sample.add_argument("--temperature", type=float, default=0.8)
    sample.add_argument("--top-k", type=int, default=40)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--ops", default=None, choices=OPS)
    args = parser.parse_args(argv)

    from llmkernels.training.config import TrainingError

    try:
        if args.command == "info":
            import llmkernels

            llmkernels.info()
        elif args.command == "tour":
            from llmkernels import tour

            tour.run()
        elif args.command in ("train", "demo"):
            return _train(args)
        elif args.command == "sample":
            return _sample(args)
    except TrainingError as e:
        print(f"llmkernels {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"llmkernels {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
