"""Under autocast, the attention functions cast as torch's scaled_dot_product_attention does:
same output dtype, same values (within the autocast dtype's tolerance), same gradient dtypes."""

import pytest
import torch
import torch.nn.functional as F

import llmkernels
from tests.helpers import TOLERANCES

AUTOCAST_DTYPES = [torch.bfloat16, torch.float16]
# (q, k, v) dtypes a caller may pass: all float32, mixed, float64 (which autocast leaves alone).
INPUT_DTYPES = [
    (torch.float32, torch.float32, torch.float32),
    (torch.bfloat16, torch.float32, torch.float32),
    (torch.float16, torch.bfloat16, torch.float32),
]


def _qkv(dtypes, gqa):
    shapes = [(2, 4, 9, 16), (2, 2 if gqa else 4, 9, 16), (2, 2 if gqa else 4, 9, 16)]
    return [torch.randn(s).to(d).requires_grad_(True) for s, d in zip(shapes, dtypes)]


def _compare(ours, theirs, autocast_dtype):
    assert ours.dtype == theirs.dtype
    torch.testing.assert_close(ours.double(), theirs.double(), **TOLERANCES[autocast_dtype])


@pytest.mark.parametrize("autocast_dtype", AUTOCAST_DTYPES, ids=str)
@pytest.mark.parametrize("dtypes", INPUT_DTYPES, ids=lambda d: "-".join(str(x)[6:] for x in d))
@pytest.mark.parametrize("gqa", [False, True], ids=["mha", "gqa"])
def test_sdpa_follows_torch_under_autocast(autocast_dtype, dtypes, gqa):
    q, k, v = _qkv(dtypes, gqa)
    with torch.autocast("cpu", dtype=autocast_dtype):
        ours = llmkernels.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        theirs = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    assert theirs.dtype == autocast_dtype  # what torch does, and so what a drop-in must do
    _compare(ours, theirs, autocast_dtype)
    ours_grads = torch.autograd.grad(ours.float().sum(), (q, k, v))
    theirs_grads = torch.autograd.grad(theirs.float().sum(), (q, k, v))
    for got, want in zip(ours_grads, theirs_grads):
        assert got.dtype == want.dtype  # each leaf's own dtype, through the cast


@pytest.mark.parametrize("autocast_dtype", AUTOCAST_DTYPES, ids=str)
def test_attention_casts_mixed_inputs_like_torch(autocast_dtype):
    q, k, v = _qkv((torch.bfloat16, torch.float32, torch.float32), gqa=True)
    with torch.autocast("cpu", dtype=autocast_dtype):
        ours = llmkernels.attention(q, k, v, causal=True)
        theirs = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    _compare(ours, theirs, autocast_dtype)


def test_sdpa_fallback_and_float64_follow_torch():
    q, k, v = _qkv((torch.float32,) * 3, gqa=False)
    mask = torch.rand(9, 9) > 0.3
    q64, k64, v64 = (t.detach().double() for t in (q, k, v))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = llmkernels.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # torch's own path
        theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        ours64 = llmkernels.scaled_dot_product_attention(q64, k64, v64)
        theirs64 = F.scaled_dot_product_attention(q64, k64, v64)
    _compare(ours, theirs, torch.bfloat16)
    assert ours64.dtype == theirs64.dtype == torch.float64
    torch.testing.assert_close(ours64, theirs64, **TOLERANCES[torch.float64])


def test_mixed_dtypes_without_autocast_still_raise():
    q, k, v = _qkv((torch.bfloat16, torch.float32, torch.float32), gqa=False)
    with pytest.raises(ValueError, match="k must have q's dtype"):
        llmkernels.attention(q, k, v)


def test_autocast_under_compile():
    q, k, v = _qkv((torch.float32,) * 3, gqa=True)

    def step(a, b, c):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return llmkernels.scaled_dot_product_attention(a, b, c, is_causal=True, enable_gqa=True)

    ours = torch.compile(step, fullgraph=True, backend="aot_eager")(q, k, v)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        theirs = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    _compare(ours, theirs, torch.bfloat16)
