"""A translation run's test scores: greedy and beam search over the test side, into report.json.

Exact match is the fraction of sentences translated character for character; chrF and BLEU are
``sacrebleu``'s corpus scores (the field's standard scorer). BLEU counts only the n-gram orders the
sentences have (``effective_order``): German writes a number as one word, where the default BLEU,
finding no 2- to 4-grams at all, scores a perfect translation 0.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from llmkernels.models.seq2seq_decode import beam_search, greedy
from llmkernels.training import checkpoint, translate_data

DECODE_BATCH = 256  # sentences per decoding batch
EXAMPLES = 5  # test sentences shown in the report


def translate_rows(model, corpus, src_rows, method: str, beam: int, length_penalty: float) -> list[str]:
    """Decoded target texts of padded source rows (``translate_data``'s arrays)."""
    device = next(model.parameters()).device
    eot = corpus.src_tokenizer.eot_id
    texts = []
    for i in range(0, len(src_rows), DECODE_BATCH):
        chunk = src_rows[i:i + DECODE_BATCH]
        src, mask, _, _ = translate_data.batch_tensors(chunk, chunk[:, :1], eot)
        src, mask = src.to(device), mask.to(device)
        if method == "greedy":
            hyps = greedy(model, src, mask)
        else:
            hyps = beam_search(model, src, mask, beam=beam, length_penalty=length_penalty)
        texts.extend(corpus.tgt_tokenizer.decode(h) for h in hyps)
    return texts


def scores(hypotheses: list[str], references: list[str]) -> dict:
    import sacrebleu

    exact = sum(h == r for h, r in zip(hypotheses, references)) / max(1, len(references))
    # Both are percentages; sacrebleu's BLEU of a perfect corpus rounds to 100.00000000000004.
    chrf = sacrebleu.corpus_chrf(hypotheses, [references]).score
    bleu = sacrebleu.BLEU(effective_order=True).corpus_score(hypotheses, [references]).score
    return {"exact_match": exact, "chrf": min(chrf, 100.0), "bleu": min(bleu, 100.0)}


@torch.no_grad()
def evaluate(model, corpus, beam: int, length_penalty: float) -> dict:
    src_rows, _ = corpus.arrays["test"]
    references = [t for _, t in corpus.texts["test"]]
    result, examples = {}, []
    for method in ("greedy", "beam"):
        began = time.perf_counter()
        hyps = translate_rows(model, corpus, src_rows, method, beam, length_penalty)
        result[method] = {**scores(hyps, references), "seconds": time.perf_counter() - began}
        if method == "beam":
            examples = [{"source": s, "reference": r, "beam": h}
                        for (s, r), h in zip(corpus.texts["test"][:EXAMPLES], hyps)]
    return {"test": result, "test_sentences": len(references), "examples": examples}


def beats(scores: dict, other: dict) -> bool:
    """Whether beam-search ``scores`` beat ``other``'s: higher exact match, or equal and higher chrF."""
    return (scores["exact_match"], scores["chrf"]) > (other["exact_match"], other["chrf"])


def write(out: str, options, quiet: bool = False, scratch: bool = False) -> dict:
    """Scores the run in ``out`` on its test side and writes ``out``/report.json; returns the report.
    With ``options.compare_scratch``, the scratch run in ``out``/scratch too (``scratch``: this is it)."""
    from llmkernels.training import translate

    model, saved = translate.load_model(out)
    corpus = translate_data.load(options.pair, options.data, options.vocab_size, options.shared_vocab,
                                 options.train_pool, options.init, build=False)
    report = {"pair": options.pair if options.data is None else None, "data": options.data,
              "beam": options.beam, "length_penalty": options.length_penalty,
              "steps": checkpoint.read_state(out)["step"], "parameters": model.num_parameters(),
              **evaluate(model, corpus, options.beam, options.length_penalty)}
    if options.init is not None:  # the scratch run took init's tokenizers and model shape only
        report["tokenizers_from" if scratch else "init"] = options.init
    if options.compare_scratch and not scratch:
        other = write(str(Path(out) / translate.SCRATCH), options, quiet, scratch=True)
        report["scratch"] = {"run_dir": str(Path(out) / translate.SCRATCH), "steps": other["steps"], "test": other["test"]}
        report["init_beats_scratch"] = beats(report["test"]["beam"], other["test"]["beam"])
    checkpoint.write_json(Path(out) / "report.json", report)
    return report


def summary(report: dict) -> str:
    lines = [f"test sentences:   {report['test_sentences']}"]
    for method in ("greedy", "beam"):
        s = report["test"][method]
        lines.append(f"{method + ':':<17} exact match {s['exact_match']:.1%}, chrF {s['chrf']:.1f}, BLEU {s['bleu']:.1f}")
    if "scratch" in report:
        s = report["scratch"]["test"]["beam"]
        lines.append(f"{'scratch, beam:':<17} exact match {s['exact_match']:.1%}, chrF {s['chrf']:.1f}, BLEU {s['bleu']:.1f}")
        verdict = "beats" if report["init_beats_scratch"] else "does NOT beat"
        lines.append(f"starting from --init {verdict} training from scratch after {report['steps']} steps (beam search)")
    return "\n".join(lines)

