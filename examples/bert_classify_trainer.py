"""Fine-tune a BertForSequenceClassification, built from a config (no download), with transformers'
Trainer and TrainingArguments, attention on llmkernels (``attn_implementation="llmkernels"``): the
classic example of a guide to LLM practice, on the package's own labelled data (snippets of the
standard library's sources, labelled with their top-level package, split by file).

    python examples/bert_classify_trainer.py [--steps 200]

Prints the test accuracy and the majority-class baseline.
"""

from __future__ import annotations

import argparse
import collections
import tempfile

import datasets
import numpy as np
import torch
import transformers

import llmkernels.integrations.transformers  # noqa: F401  registers "llmkernels"
import stdlib_text


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps (default 200)")
    parser.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    parser.add_argument("--length", type=int, default=96, help="tokens a snippet, [CLS]/[SEP] included (default 96)")
    parser.add_argument("--per-package", type=int, default=400, help="training snippets a package (default 400)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    args = parser.parse_args(argv)

    data = stdlib_text.load(args.per_package, max(8, args.per_package // 5))
    tokenizer = stdlib_text.train_tokenizer(data.train.texts, vocab_size=2000)

    def as_dataset(split):
        ids, masks = stdlib_text.encode_padded(tokenizer, split.texts, args.length)
        return datasets.Dataset.from_dict({"input_ids": ids, "attention_mask": masks, "labels": split.labels})

    config = transformers.BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=128, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=256, max_position_embeddings=args.length,
                                     num_labels=len(data.label_names), pad_token_id=0)
    torch.manual_seed(args.seed)
    model = transformers.BertForSequenceClassification._from_config(config, attn_implementation="llmkernels")

    def accuracy(prediction):
        return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}

    with tempfile.TemporaryDirectory() as out:
        training = transformers.TrainingArguments(
            output_dir=out, max_steps=args.steps, per_device_train_batch_size=args.batch, per_device_eval_batch_size=64,
            learning_rate=1e-3, warmup_steps=max(1, args.steps // 10), weight_decay=0.01, logging_steps=max(1, args.steps // 5),
            save_strategy="no", report_to=[], use_cpu=True, seed=args.seed, disable_tqdm=True)
        trainer = transformers.Trainer(model=model, args=training, train_dataset=as_dataset(data.train),
                                       eval_dataset=as_dataset(data.test), compute_metrics=accuracy)
        trainer.train()
        metrics = trainer.evaluate()
    majority = collections.Counter(data.test.labels).most_common(1)[0][1] / len(data.test.labels)
    result = {"accuracy": metrics["eval_accuracy"], "majority_accuracy": majority, "classes": len(data.label_names)}
    print(f"test accuracy {result['accuracy']:.3f} (majority class {majority:.3f}, {result['classes']} packages)")
    return result


if __name__ == "__main__":
    main()
