"""The encoder: both ops paths agree (loss and gradients), padded positions change nothing, the
heads and the config refuse what they cannot do."""

import pytest
import torch

from llmkernels.models import Encoder, EncoderConfig
from tests.helpers import assert_close, assert_close_scaled


def config(**kw):
    return EncoderConfig(**{**dict(vocab_size=61, max_seq_len=16, d_model=32, n_layer=2, n_head=4, n_kv_head=2,
                                   mlp_hidden=48), **kw})


def pair(**kw):
    """The same weights on PyTorch's functions and on the llmkernels ops."""
    torch.manual_seed(0)
    ref = Encoder(config(ops="torch", **kw))
    torch.manual_seed(0)
    ours = Encoder(config(ops="llmkernels", **kw))
    return ref, ours


def padded_batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 61, (3, 14), generator=g)
    mask = torch.ones(3, 14, dtype=torch.bool)
    mask[1, 9:] = False
    mask[2, 4:] = False
    return idx, mask


@pytest.mark.parametrize("positional", ["rope", "sinusoidal"])
def test_mlm_loss_and_gradients_agree_on_both_ops_paths(positional):
    ref, ours = pair(positional=positional)
    idx, mask = padded_batch()
    labels = torch.full_like(idx, -100)
    labels[:, ::3] = idx[:, ::3]
    labels[~mask] = -100
    losses = [m(idx, labels, mask) for m in (ref, ours)]
    assert_close(losses[1], losses[0])
    for loss in losses:
        loss.backward()
    for (name, a), b in zip(ref.named_parameters(), ours.parameters()):
        assert_close_scaled(b.grad, a.grad)


@pytest.mark.parametrize("pooling", ["mean", "first"])
def test_classifier_agrees_on_both_ops_paths(pooling):
    ref, ours = pair(pooling=pooling, num_labels=5, positional="sinusoidal")
    idx, mask = padded_batch()
    assert_close(ours(idx, attention_mask=mask), ref(idx, attention_mask=mask))
    labels = torch.tensor([0, 4, 2])
    losses = [m(idx, labels, mask) for m in (ref, ours)]
    assert_close(losses[1], losses[0])


@pytest.mark.parametrize("ops", ["llmkernels", "torch"])
@pytest.mark.parametrize("positional", ["rope", "sinusoidal"])
@pytest.mark.parametrize("pooling", ["mean", "first"])
def test_padded_positions_change_nothing(ops, positional, pooling):
    torch.manual_seed(0)
    model = Encoder(config(ops=ops, positional=positional, pooling=pooling, num_labels=3))
    idx, mask = padded_batch()
    logits = model(idx, attention_mask=mask)
    other = idx.clone()
    other[~mask] = 7  # other tokens in the padding
    assert torch.equal(model(other, attention_mask=mask), logits)
    hidden = model.encode(idx, mask)
    for row, length in ((1, 9), (2, 4)):  # the same text alone, unpadded
        alone = model.encode(idx[row:row + 1, :length])
        assert_close(alone[0], hidden[row, :length])
        assert_close(model(idx[row:row + 1, :length])[0], logits[row])


def test_mlm_head_is_tied_and_heads_are_where_configured():
    model = Encoder(config())
    assert model.lm_head.weight is model.embed.weight and model.classifier is None
    with pytest.raises(ValueError, match="no classification head"):
        model.classify(torch.zeros(1, 4, dtype=torch.long))
    assert Encoder(config(num_labels=4)).classifier.out_features == 4


@pytest.mark.parametrize("bad, match", [
    (dict(pooling="max"), "pooling must be one of"),
    (dict(num_labels=-1), "num_labels must be an int >= 0"),
    (dict(d_model=30), "multiple of n_head"),
])
def test_config_refuses(bad, match):
    with pytest.raises(ValueError, match=match):
        config(**bad)


def test_encode_refuses_bad_shapes():
    model = Encoder(config())
    with pytest.raises(ValueError, match="max_seq_len"):
        model.encode(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask must be a bool"):
        model.encode(torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4))


def test_mlm_loss_is_the_cross_entropy_of_the_masked_positions_only():
    torch.manual_seed(0)
    model = Encoder(config(ops="torch"))
    idx, mask = padded_batch()
    labels = torch.full_like(idx, -100)
    labels[0, 2], labels[1, 5], labels[2, 1] = 4, 9, 60
    with torch.no_grad():
        model.mlm_bias.normal_()
    logits = model.lm_head(model.encode(idx, mask)) + model.mlm_bias
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 61), labels.reshape(-1), ignore_index=-100)
    assert_close(model(idx, labels, mask), expected)
