"""What both Trainer examples share: the standard-library snippet data (llmkernels.training.classify_data)
and a BPE tokenizer trained on its training side, all local (no download)."""

from __future__ import annotations

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from llmkernels.training import classify_data

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


def load(per_package_train: int, per_package_test: int):
    """The labelled snippets, at most the given counts a package and split."""
    return classify_data.load(max_per_package={"train": per_package_train, "test": per_package_test})


def train_tokenizer(texts: list[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE learnt on ``texts``; ids 0-3 are SPECIALS ([PAD] is 0)."""
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                             show_progress=False))
    return tokenizer


def encode_padded(tokenizer: Tokenizer, texts: list[str], length: int) -> tuple[list[list[int]], list[list[int]]]:
    """[CLS] text [SEP], cut or padded with [PAD] to ``length``; returns (input_ids, attention_mask)."""
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    ids, masks = [], []
    for text in texts:
        row = [cls] + tokenizer.encode(text).ids[: length - 2] + [sep]
        ids.append(row + [0] * (length - len(row)))
        masks.append([1] * len(row) + [0] * (length - len(row)))
    return ids, masks
