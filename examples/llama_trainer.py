"""Train a tiny Llama language model with transformers' Trainer, patched by ``apply_llmkernels``
(attention, rotary, RMSNorm, SwiGLU, and the fused linear cross-entropy: no logits in training), on
the standard library's sources; built from a config, nothing downloaded.

    python examples/llama_trainer.py [--steps 100]

Prints the first and last logged training losses and the evaluation loss.
"""

from __future__ import annotations

import argparse
import tempfile

import datasets
import torch
import transformers

from llmkernels.integrations.transformers import apply_llmkernels
import stdlib_text


def blocks(tokenizer, texts: list[str], length: int) -> list[list[int]]:
    """The texts' tokens run together and cut into blocks of ``length``."""
    stream = [t for text in texts for t in tokenizer.encode(text).ids]
    return [stream[i:i + length] for i in range(0, len(stream) - length + 1, length)]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps (default 100)")
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--length", type=int, default=128, help="tokens a block (default 128)")
    parser.add_argument("--per-package", type=int, default=400, help="snippets a package (default 400)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    args = parser.parse_args(argv)

    data = stdlib_text.load(args.per_package, max(8, args.per_package // 5))
    tokenizer = stdlib_text.train_tokenizer(data.train.texts, vocab_size=2000)
    train = datasets.Dataset.from_dict({"input_ids": blocks(tokenizer, data.train.texts, args.length)})
    test = datasets.Dataset.from_dict({"input_ids": blocks(tokenizer, data.test.texts, args.length)})
    config = transformers.LlamaConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=128, intermediate_size=352,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=args.length, pad_token_id=0)
    torch.manual_seed(args.seed)
    model = transformers.LlamaForCausalLM._from_config(config)
    handle = apply_llmkernels(model)
    collator = transformers.default_data_collator

    def with_labels(features):
        batch = collator(features)
        batch["labels"] = batch["input_ids"].clone()
        return batch

    with tempfile.TemporaryDirectory() as out:
        training = transformers.TrainingArguments(
            output_dir=out, max_steps=args.steps, per_device_train_batch_size=args.batch, per_device_eval_batch_size=args.batch,
            gradient_accumulation_steps=2, learning_rate=2e-3, warmup_steps=max(1, args.steps // 10),
            logging_steps=max(1, args.steps // 10), save_strategy="no", report_to=[], use_cpu=True, seed=args.seed,
            disable_tqdm=True)
        trainer = transformers.Trainer(model=model, args=training, train_dataset=train, eval_dataset=test,
                                       data_collator=with_labels)
        trainer.train()
        losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
        evaluation = trainer.evaluate()
    patched = list(handle.applied)
    handle.undo()
    result = {"first_loss": losses[0], "last_loss": losses[-1], "eval_loss": evaluation["eval_loss"], "patched": patched}
    print(f"training loss {losses[0]:.3f} -> {losses[-1]:.3f}; evaluation loss {evaluation['eval_loss']:.3f} "
          f"(patched: {', '.join(patched)})")
    return result


if __name__ == "__main__":
    main()
