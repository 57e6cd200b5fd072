"""The translation model's two benchmarks: decoding with the caches against recomputing the prefix,
and training with ``--ops llmkernels`` against ``--ops torch``.

* Decoding: batched beam search of the ``small`` Seq2Seq (random weights, the end token's logit held at
  zero so that every hypothesis runs to ``--max-len``: the longest prefix, the case the caches are for) with ``cache=True`` (self-
  attention KVCache, reordered in place as the beams move; cross-attention keys/values projected
  once per sentence, whose beams attend to them as one problem) and ``cache=False`` (the encoder
  output copied per beam, the whole prefix and its cross-attention recomputed at each step, as a
  decoder without caches does), interleaved rounds; the two must give the same tokens (asserted).
  Both share the step's ranking (each row's top ``beam`` tokens). Target: >= 3x faster per
  sentence with the caches.
* Training: the same model, seed and batches (number-word lengths: 14 source, 6 target tokens)
  trained in a fresh subprocess per contender (so peak RSS is its own): median step time, target
  tokens/s and peak RSS.

    python benchmarks/bench_translate.py [--preset small] [--sentences 64] [--beam 4] [--max-len 24] [--steps 20]
    pytest benchmarks/bench_translate.py -s
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time

import pytest
import torch

VOCAB, SRC_LEN, TGT_LEN = 1024, 14, 6


def build(preset: str, ops: str, max_len: int):
    from llmkernels.models import SEQ2SEQ_PRESETS, Seq2Seq, Seq2SeqConfig

    torch.manual_seed(0)
    config = Seq2SeqConfig(**SEQ2SEQ_PRESETS[preset], src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, max_src_len=SRC_LEN,
                           max_tgt_len=max_len + 1, bos_id=0, eos_id=0, ops=ops)
    model = Seq2Seq(config)
    with torch.no_grad():  # the end token's (tied) row at zero: its logit 0 never tops 1024 random ones
        model.lm_head.weight[0] = 0.0
    return model


def decoding(preset: str, sentences: int, beam: int, max_len: int, rounds: int) -> dict:
    from llmkernels.bench.stats import interleaved
    from llmkernels.models.seq2seq_decode import beam_search

    model = build(preset, "llmkernels", max_len).eval()
    g = torch.Generator().manual_seed(1)
    src = torch.randint(1, VOCAB, (sentences, SRC_LEN), generator=g)
    cached = beam_search(model, src, beam=beam, max_len=max_len, cache=True)
    if cached != beam_search(model, src, beam=beam, max_len=max_len, cache=False):
        raise AssertionError("decoding with and without the caches gave different tokens")
    samples = interleaved({
        "recompute the prefix": lambda: beam_search(model, src, beam=beam, max_len=max_len, cache=False),
        "caches": lambda: beam_search(model, src, beam=beam, max_len=max_len, cache=True),
    }, rounds=rounds, warmup=1)
    medians = {name: statistics.median(times) for name, times in samples.items()}
    return {"medians_s": medians, "per_sentence_ms": {k: v / sentences * 1e3 for k, v in medians.items()},
            "speedup": medians["recompute the prefix"] / medians["caches"],
            "tokens": sum(map(len, cached)) / sentences}


def _train_child(args) -> None:
    """In a fresh process: ``--steps`` training steps of one contender; prints BENCH_RESULT."""
    model = build(args.preset, args.ops, TGT_LEN)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(2)
    src = torch.randint(1, VOCAB, (args.batch, SRC_LEN), generator=g)
    mask = torch.ones_like(src, dtype=torch.bool)
    mask[::3, SRC_LEN - 4:] = False  # a third of the sources padded, as a batch of number words is
    tgt = torch.randint(1, VOCAB, (args.batch, TGT_LEN + 1), generator=g)
    times, losses = [], []
    for _ in range(args.steps):
        began = time.perf_counter()
        loss = model(src, mask, tgt[:, :-1], tgt[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - began)
        losses.append(loss.item())
    step_s = statistics.median(times[2:] or times)
    print("BENCH_RESULT " + json.dumps({
        "ops": args.ops, "median_step_s": step_s, "tokens_per_s": args.batch * TGT_LEN / step_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "final_loss": losses[-1]}))


def training(preset: str, steps: int, batch: int) -> dict:
    from benchmarks.common import child_result

    results = {}
    for ops in ("torch", "llmkernels"):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--ops", ops, "--preset", preset,
               "--steps", str(steps), "--batch", str(batch)]
        results[ops] = child_result(cmd, f"training child ({ops})", cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return results


def format_report(dec: dict, train: dict, args) -> str:
    lines = [f"decoding: {args.preset} Seq2Seq, {args.sentences} sentences, beam {args.beam}, {dec['tokens']:.0f} tokens each"]
    for name, ms in dec["per_sentence_ms"].items():
        lines.append(f"  {name:<22} {ms:8.2f} ms per sentence")
    lines.append(f"  caches speed-up: {dec['speedup']:.2f}x (target >= 3x)")
    lines.append(f"training: {args.preset} Seq2Seq, batch {args.batch}, {args.steps} steps, {SRC_LEN} source / {TGT_LEN} target tokens")
    for ops, r in train.items():
        lines.append(f"  --ops {ops:<11} {r['tokens_per_s']:10,.0f} target tokens/s   peak RSS {r['peak_rss_mb']:7,.0f} MB"
                     f"   final loss {r['final_loss']:.4f}")
    lines.append(f"  tokens/s ratio (llmkernels / torch): "
                 f"{train['torch']['median_step_s'] / train['llmkernels']['median_step_s']:.2f}x")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ops", default="llmkernels", help=argparse.SUPPRESS)
    p.add_argument("--preset", default="small")
    p.add_argument("--sentences", type=int, default=64)
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--max-len", type=int, default=24)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=128)
    return p


def test_translate_decoding_and_training():
    """Timed in its own interleaved rounds (decoding) and fresh processes (training): no pytest-benchmark row."""
    from benchmarks.common import record

    args = parser().parse_args(os.environ.get("LLMKERNELS_BENCH_TRANSLATE_ARGS", "").split())
    dec = decoding(args.preset, args.sentences, args.beam, args.max_len, args.rounds)
    train = training(args.preset, args.steps, args.batch)
    record(format_report(dec, train, args).splitlines(), [])  # printed with the other cases' lines


def main() -> None:
    args = parser().parse_args()
    if args.child:
        _train_child(args)
        return
    dec = decoding(args.preset, args.sentences, args.beam, args.max_len, args.rounds)
    print(format_report(dec, training(args.preset, args.steps, args.batch), args))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks.common
    main()
