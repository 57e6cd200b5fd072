"""Training: data, tokenizer, loop, checkpoints, reports."""
