"""The encoder-decoder: caches change nothing, decoding agrees with itself, padding is invisible."""

import pytest
import torch

from llmkernels.models import Seq2Seq, Seq2SeqConfig
from llmkernels.models.seq2seq_decode import beam_search, greedy
from llmkernels.nn import KVCache
from tests.helpers import assert_close

VOCAB = 40


def tiny(ops="llmkernels", positional="sinusoidal", shared=True, init_std=0.02):
    torch.manual_seed(0)
    config = Seq2SeqConfig(src_vocab_size=VOCAB if shared else VOCAB + 7, tgt_vocab_size=VOCAB, shared_vocab=shared,
                           d_model=32, n_enc_layer=2, n_dec_layer=2, n_head=4, n_kv_head=2, mlp_hidden=64,
                           max_src_len=16, max_tgt_len=16, bos_id=1, eos_id=2, positional=positional, ops=ops,
                           init_std=init_std)
    return Seq2Seq(config).eval()


def batch(rows=3, src_len=7, tgt_len=6, vocab=VOCAB):
    src = torch.randint(3, vocab, (rows, src_len))
    mask = torch.ones(rows, src_len, dtype=torch.bool)
    mask[1, 5:] = False
    mask[2, 2:] = False
    return src, mask, torch.randint(3, VOCAB, (rows, tgt_len))


@pytest.mark.parametrize("ops", ["llmkernels", "torch"])
@pytest.mark.parametrize("positional", ["sinusoidal", "rope"])
def test_teacher_forced_logits_equal_with_and_without_the_caches(ops, positional):
    model = tiny(ops, positional, shared=positional == "rope")
    src, mask, tgt = batch(vocab=model.config.src_vocab_size)
    with torch.no_grad():
        full = model.logits(src, mask, tgt)
        state = model.start_decoding(model.encode(src, mask), mask)
        stepped = [model.lm_head(model.decode_hidden(tgt[:, i:i + 1], None, state=state)) for i in range(tgt.shape[1])]
        # Two tokens at a time: the cache takes several positions per step as well.
        state = model.start_decoding(model.encode(src, mask), mask)
        pairs = [model.lm_head(model.decode_hidden(tgt[:, i:i + 2], None, state=state)) for i in range(0, tgt.shape[1], 2)]
    assert_close(torch.cat(stepped, 1), full)
    assert_close(torch.cat(pairs, 1), full)


def test_the_fused_ops_and_torch_give_the_same_model():
    src, mask, tgt = batch()
    fused, plain = tiny("llmkernels"), tiny("torch")
    assert all(torch.equal(a, b) for a, b in zip(fused.state_dict().values(), plain.state_dict().values()))
    assert_close(fused.logits(src, mask, tgt), plain.logits(src, mask, tgt))
    out = tgt.clone()
    out[2, 3:] = -100
    loss_fused, loss_plain = fused(src, mask, tgt, out), plain(src, mask, tgt, out)
    assert_close(loss_fused, loss_plain)
    loss_fused.backward()
    loss_plain.backward()
    for (name, a), b in zip(fused.named_parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_padding_is_invisible():
    """A sentence's logits and decoding are the same alone and padded inside a batch."""
    model = tiny(init_std=0.3)
    src, mask, tgt = batch()
    with torch.no_grad():
        together = model.logits(src, mask, tgt)
        for row in range(len(src)):
            alone = src[row:row + 1, mask[row]]
            assert_close(model.logits(alone, None, tgt[row:row + 1])[0], together[row])
    assert greedy(model, src, mask, max_len=8)[2] == greedy(model, src[2:3, :2], max_len=8)[0]
    assert beam_search(model, src, mask, beam=3, max_len=8)[1] == beam_search(model, src[1:2, :5], beam=3, max_len=8)[0]


def test_the_loss_ignores_padded_targets():
    model = tiny()
    src, mask, tgt = batch()
    out = tgt.clone()
    out[:, 4:] = -100
    changed = tgt.clone()
    changed[:, 5:] = 3  # a padded input position comes after every counted one: causal, so unseen
    assert_close(model(src, mask, tgt, out), model(src, mask, changed, out))
    logits = model.logits(src, mask, tgt)[:, :4]
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tgt[:, :4].reshape(-1))
    assert_close(model(src, mask, tgt, out), expected)


@pytest.mark.parametrize("ops", ["llmkernels", "torch"])
def test_beam_width_one_is_greedy_and_the_caches_change_no_token(ops):
    model = tiny(ops, init_std=0.3)  # a random model that says more than its end token
    src, mask, _ = batch(rows=5)
    tokens = greedy(model, src, mask, max_len=10)
    assert any(len(t) > 2 for t in tokens)
    assert beam_search(model, src, mask, beam=1, max_len=10) == tokens
    assert greedy(model, src, mask, max_len=10, cache=False) == tokens
    wide = beam_search(model, src, mask, beam=4, max_len=10)
    assert beam_search(model, src, mask, beam=4, max_len=10, cache=False) == wide
    assert all(model.config.eos_id not in t and len(t) <= 10 for t in wide)


def test_beam_search_finds_a_sequence_at_least_as_likely_as_greedy():
    model = tiny(init_std=0.3)
    src, mask, _ = batch(rows=4)

    def log_prob(row, tokens):
        tgt = torch.tensor([[1] + tokens])
        with torch.no_grad():
            logp = torch.log_softmax(model.logits(src[row:row + 1], mask[row:row + 1], tgt)[0], -1)
        return sum(logp[i, t].item() for i, t in enumerate(tokens + [2]))

    ended = lambda t: len(t) < 10  # noqa: E731  (the hypothesis stopped by its end token)
    for row, (g, b) in enumerate(zip(greedy(model, src, mask, max_len=10),
                                     beam_search(model, src, mask, beam=4, length_penalty=0.0, max_len=10))):
        if ended(g) and ended(b):
            assert log_prob(row, b) >= log_prob(row, g) - 1e-4


def test_kv_cache_reorder_keeps_the_rows_asked_for():
    cache = KVCache(4)
    k = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 2, 2).contiguous()
    cache.append(k, k + 10)
    cache.reorder(torch.tensor([2, 2, 0]))
    assert cache.k[:, 0, 0, 0].tolist() == [2.0, 2.0, 0.0]
    assert cache.v[:, 0, 0, 0].tolist() == [12.0, 12.0, 10.0]
    assert len(cache) == 2


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="shared_vocab"):
        Seq2SeqConfig(src_vocab_size=10, tgt_vocab_size=12)
    with pytest.raises(ValueError, match="eos_id"):
        Seq2SeqConfig(tgt_vocab_size=10, src_vocab_size=10, eos_id=10)
    model = tiny()
    with pytest.raises(ValueError, match="max_src_len"):
        model.encode(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="beam"):
        beam_search(model, torch.zeros(1, 3, dtype=torch.long), beam=0)


def test_the_encoder_output_is_projected_once_per_layer_when_decoding():
    model = tiny(init_std=0.3)
    src, mask, _ = batch()
    calls = []
    for block in model.decoder:
        block.cross_attn.kv_proj.register_forward_hook(lambda *args: calls.append(1))
    tokens = beam_search(model, src, mask, beam=3, max_len=6)
    assert len(calls) == len(model.decoder)  # once, however many steps
    calls.clear()
    assert beam_search(model, src, mask, beam=3, max_len=6, cache=False) == tokens
    assert len(calls) > len(model.decoder)  # the baseline projects it again at every step


def test_beam_search_reads_the_hypotheses_back_from_each_steps_origins():
    """Row r of a step continues row origin[r]; a hypothesis's length counts its first end token."""
    from llmkernels.models.seq2seq_decode import _lengths, _read_back

    history = [(torch.tensor([0, 0, 1]), torch.tensor([5, 6, 7])),
               (torch.tensor([1, 0, 0]), torch.tensor([2, 8, 9])),
               (torch.tensor([0, 2, 1]), torch.tensor([2, 3, 4]))]
    tokens = _read_back(history)
    assert tokens.tolist() == [[6, 2, 2], [5, 9, 3], [5, 8, 4]]
    assert _lengths(tokens, eos=2).tolist() == [2, 3, 3]


def test_the_caches_are_not_reordered_after_the_last_step():
    """The reorder that follows a step is applied when the next step runs: the last one's never is."""
    model = tiny(init_std=0.3)
    src, mask, _ = batch()
    reorders = []
    original = KVCache.reorder
    KVCache.reorder = lambda self, index: (reorders.append(1), original(self, index))[1]
    with torch.no_grad():
        state = model.start_decoding(model.encode(src, mask), mask)
    model.start_decoding = lambda *args, **kwargs: state  # the search's own state, to read its length
    try:
        tokens = beam_search(model, src, mask, beam=3, max_len=6)
    finally:
        KVCache.reorder = original
        del model.start_decoding
    assert tokens == beam_search(model, src, mask, beam=3, max_len=6, cache=False)
    assert len(reorders) == (len(state) - 1) * len(model.decoder)  # len(state): the steps run


def test_the_first_step_runs_one_row_per_sentence_then_the_beams():
    """The beams start identical: the first step decodes each sentence once, the next ones every beam;
    a beam wider than the vocabulary still decodes (its extra beams start at -inf)."""
    model = tiny(init_std=0.3)
    src, mask, _ = batch()
    rows = []
    hook = model.lm_head.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[0]))
    try:
        tokens = beam_search(model, src, mask, beam=3, max_len=6)
    finally:
        hook.remove()
    assert rows[0] == len(src) and set(rows[1:]) == {3 * len(src)}
    assert tokens == beam_search(model, src, mask, beam=3, max_len=6, cache=False)
    wide = beam_search(model, src, mask, beam=VOCAB + 3, max_len=6)
    assert wide == beam_search(model, src, mask, beam=VOCAB + 3, max_len=6, cache=False)
    assert all(model.config.eos_id not in t and len(t) <= 6 for t in wide)
