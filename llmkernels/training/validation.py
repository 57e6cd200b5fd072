"""Validation during training: the next-token (or masked-token) loss over held-out windows, and a
text sample from a GPT; ``GPTValidation`` is what the loop uses unless a plan brings its own."""

from __future__ import annotations

import torch

from llmkernels.models import GPT
from llmkernels.training.config import TrainConfig


@torch.no_grad()
def evaluate(model: GPT, windows, batch: int, autocast, dist) -> float:
    """Mean loss per scored token: ``windows`` (count, seq + 1) for next-token prediction, or
    (inputs, targets) pairs with -100 where nothing is scored (masked-language modelling)."""
    inputs, targets = windows if isinstance(windows, tuple) else (windows[:, :-1], windows[:, 1:])
    inputs, targets = inputs[dist.rank::dist.world], targets[dist.rank::dist.world]
    total, count = torch.zeros((), dtype=torch.float64), 0
    device = next(model.parameters()).device
    for i in range(0, len(inputs), batch):
        chunk = targets[i:i + batch]
        with autocast():
            loss = model(inputs[i:i + batch].to(device), chunk.to(device))
        scored = int((chunk != -100).sum())
        total += loss.double().cpu() * scored
        count += scored
    if dist.world > 1:
        both = torch.stack([total, torch.tensor(float(count), dtype=torch.float64)])
        torch.distributed.all_reduce(both)
        total, count = both[0], both[1].item()
    return (total / count).item()


def sample_text(model: GPT, tok, prompt: str, tokens: int, seed: int, temperature=0.8, top_k=40) -> str:
    ids = tok.encode(prompt) or [tok.eot_id]
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    out = model.generate(torch.tensor([ids], device=device), tokens, temperature=temperature, top_k=top_k, generator=g)
    model.train(was_training)
    return tok.decode(out[0].tolist())


class GPTValidation:
    """The GPT's validation: next-token loss on windows of the validation stream, and a sample
    continuing its first tokens."""

    def __init__(self, corpus, config: TrainConfig, dist, windows, score):
        self.windows, self.score = windows, score  # score: evaluate, or a plan's own (same arguments)
        self.prompt = corpus.tokenizer.decode(corpus.val[: min(8, len(corpus.val))].tolist())
        self.tokenizer, self.config, self.dist = corpus.tokenizer, config, dist

    def loss(self, model, autocast) -> float:
        return self.score(model, self.windows, self.config.batch_size, autocast, self.dist)

    def sample(self, model, step: int) -> str:
        return sample_text(model, self.tokenizer, self.prompt, self.config.sample_tokens, self.config.seed + step)
