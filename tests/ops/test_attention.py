"""Attention: the reference against a naive float64 autograd spec, every backend against the reference."""

import math

import pytest
import torch
import torch.nn.functional as F

import llmkernels
from llmkernels.ops.attention import reference
from tests.helpers import assert_close, assert_close_scaled, assert_compiled_matches_eager, backend_cases, skip_unless_present


def naive(q, k, v, causal=False, scale=None, window=(-1, -1), softcap=None, alibi=None, kpm=None):
    """Differentiable float64 statement of the semantics, written independently of reference.py."""
    batch, hq, sq, dim = q.shape
    hk, sk = k.shape[1], k.shape[2]
    scale = 1 / math.sqrt(dim) if scale is None else scale
    k = k.repeat_interleave(hq // hk, 1)
    v = v.repeat_interleave(hq // hk, 1)
    s = scale * q @ k.transpose(-1, -2)
    if softcap:
        s = softcap * torch.tanh(s / softcap)
    offset = sk - sq
    rows = torch.arange(sq)[:, None] + offset
    cols = torch.arange(sk)[None, :]
    if alibi is not None:
        slopes = alibi if alibi.dim() == 2 else alibi.expand(batch, hq)
        s = s - slopes[:, :, None, None].double() * (rows - cols).abs()
    ok = torch.ones(sq, sk, dtype=torch.bool)
    if causal:
        ok &= cols <= rows
    if window[0] >= 0:
        ok &= cols >= rows - window[0]
    if window[1] >= 0:
        ok &= cols <= rows + window[1]
    ok = ok.expand(batch, hq, sq, sk)
    if kpm is not None:
        ok = ok & kpm[:, None, None, :]
    s = s.masked_fill(~ok, float("-inf"))
    lse = torch.logsumexp(s, -1)
    p = torch.softmax(s, -1).nan_to_num(0.0)
    return p @ v, lse


CASES = [  # (batch, hq, hk, sq, sk, dim, options)
    (1, 1, 1, 1, 1, 16, {}),
    (2, 4, 2, 7, 7, 16, {"causal": True}),
    (1, 2, 1, 5, 19, 32, {"causal": True}),
    (2, 2, 2, 23, 9, 40, {"causal": True}),  # Sq > Sk: early rows see no key
    (1, 3, 1, 31, 31, 64, {"window": (8, 0), "causal": True}),
    (1, 2, 2, 17, 25, 16, {"window": (3, 3)}),
    (2, 2, 1, 13, 13, 32, {"softcap": 5.0, "alibi": True}),
    (2, 2, 2, 11, 14, 16, {"kpm": True, "causal": True}),
    (1, 1, 1, 33, 70, 128, {"scale": 0.3}),
    # Several query and key blocks (64 rows each on the CPU), an odd key count, GQA: the blocks'
    # shared operands (bf16 value pairs, the backward's key cache) and their edges.
    (1, 4, 2, 130, 133, 64, {"causal": True}),
    (2, 2, 1, 129, 67, 32, {}),
    # Causal at the diagonal: the CPU backward splits such tiles in two half tiles (keys from 32 on
    # are masked for the first 32 queries), here with odd halves and with Sq > Sk (the masked
    # quadrant off the diagonal).
    (1, 2, 1, 101, 101, 40, {"causal": True}),
    (1, 2, 2, 140, 120, 16, {"causal": True}),
    # Decoding: one query per head, its GQA group packed into one query block (ops/attention/decode.py).
    (2, 8, 2, 1, 37, 32, {"causal": True}),
    (1, 4, 1, 1, 70, 64, {"softcap": 5.0, "kpm": True}),
    (1, 6, 3, 1, 20, 16, {"window": (5, 0), "causal": True}),  # a window: not packed
    # One query per task (no GQA group to pack): the CPU kernel's single-query path, lanes along
    # head_dim; several key blocks, and a head_dim that is no multiple of 16 (zero-padded rows).
    (3, 4, 4, 1, 133, 64, {"causal": True}),
    (2, 3, 3, 1, 29, 40, {"scale": 0.3}),
]


def _make(case, dtype, device):
    batch, hq, hk, sq, sk, dim, options = case
    q = torch.randn(batch, hq, sq, dim, device=device).to(dtype)
    k = torch.randn(batch, hk, sk, dim, device=device).to(dtype)
    v = torch.randn(batch, hk, sk, dim, device=device).to(dtype)
    kwargs = {key: val for key, val in options.items() if key in ("causal", "window", "softcap", "scale")}
    if options.get("alibi"):
        kwargs["alibi_slopes"] = torch.rand(batch, hq, device=device)
    if options.get("kpm"):
        kpm = torch.rand(batch, sk, device=device) > 0.3
        kpm[0] = False  # a batch row with no visible key at all
        kwargs["key_padding_mask"] = kpm
    return q, k, v, kwargs


def _naive_kwargs(kwargs):
    return dict(causal=kwargs.get("causal", False), scale=kwargs.get("scale"), window=kwargs.get("window", (-1, -1)),
                softcap=kwargs.get("softcap"), alibi=kwargs.get("alibi_slopes"), kpm=kwargs.get("key_padding_mask"))


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:6])) + "-" + "-".join(c[6]))
def test_reference_matches_naive_spec(case):
    q, k, v, kwargs = _make(case, torch.float64, "cpu")
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    with llmkernels.use_backend("reference"):
        out, lse = llmkernels.attention(*leaves, return_lse=True, **kwargs)
    naive_leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    expected, expected_lse = naive(*naive_leaves, **_naive_kwargs(kwargs))
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(lse.double(), expected_lse)
    grad = torch.randn_like(out)
    for got, want in zip(torch.autograd.grad(out, leaves, grad), torch.autograd.grad(expected, naive_leaves, grad)):
        torch.testing.assert_close(got, want.nan_to_num(0.0))


@pytest.mark.parametrize("device,backend,dtype", backend_cases("attention"))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:6])) + "-" + "-".join(c[6]))
def test_backend_matches_reference(device, backend, dtype, case):
    skip_unless_present("attention", device, backend, dtype)
    if backend == "triton" and device == "cpu" and case[3] * case[4] > 1200:
        pytest.skip("the Triton interpreter is slow: small shapes only")
    q, k, v, kwargs = _make(case, dtype, device)
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    with llmkernels.use_backend(backend):
        out, lse = llmkernels.attention(*leaves, return_lse=True, **kwargs)
    assert out.dtype == dtype and not torch.isnan(out).any()
    # The spec for low-precision inputs is the reference backend on the same inputs: float32 math,
    # with the forward's output rounded to the input dtype feeding the backward's rowsum(dout * out),
    # as every flash kernel does. float32 inputs are held to a float64 reference.
    spec_dtype = torch.float64 if dtype == torch.float32 else dtype
    ref_leaves = [t.to(spec_dtype).requires_grad_(True) for t in (q, k, v)]
    ref_kwargs = {key: (val.double() if key == "alibi_slopes" else val) for key, val in kwargs.items()}
    with llmkernels.use_backend("reference"):
        expected, expected_lse = llmkernels.attention(*ref_leaves, return_lse=True, **ref_kwargs)
    assert_close(out, expected, dtype)
    finite = torch.isfinite(expected_lse)
    assert torch.equal(torch.isfinite(lse), finite)
    assert_close(lse[finite], expected_lse[finite], dtype if dtype != torch.float32 else torch.float32)
    grad = torch.randn_like(expected).to(dtype)
    grads = torch.autograd.grad(out, leaves, grad)
    for got, want in zip(grads, torch.autograd.grad(expected, ref_leaves, grad.to(spec_dtype))):
        assert_close_scaled(got, want, dtype)


def test_strided_inputs_and_empty_sequences():
    x = torch.randn(2, 9, 3, 16)  # (B, S, H, D)
    q = k = v = x.transpose(1, 2)
    for backend in llmkernels.available_backends("cpu", "attention"):
        with llmkernels.use_backend(backend):
            out = llmkernels.attention(q, k, v, causal=True)
        torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), rtol=1e-5, atol=1e-5)
        with llmkernels.use_backend(backend):
            empty_k = torch.randn(2, 3, 0, 16)
            out, lse = llmkernels.attention(q, empty_k, empty_k, return_lse=True)
        assert torch.equal(out, torch.zeros_like(out)) and torch.isneginf(lse).all()


def test_varlen_matches_per_sequence():
    lengths = [5, 1, 9]
    cu = torch.tensor([0, 5, 6, 15], dtype=torch.int32)
    q = torch.randn(15, 4, 16, requires_grad=True)
    k = torch.randn(15, 2, 16, requires_grad=True)
    v = torch.randn(15, 2, 16, requires_grad=True)
    out, lse = llmkernels.attention_varlen(q, k, v, cu, cu, 9, 9, causal=True, return_lse=True)
    assert out.shape == (15, 4, 16) and lse.shape == (4, 15)
    start = 0
    for length in lengths:
        sl = slice(start, start + length)
        expected = F.scaled_dot_product_attention(
            q[sl].transpose(0, 1)[None], k[sl].transpose(0, 1)[None], v[sl].transpose(0, 1)[None], is_causal=True, enable_gqa=True
        )[0].transpose(0, 1)
        torch.testing.assert_close(out[sl], expected, rtol=1e-5, atol=1e-5)
        start += length
    out.sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()
    with pytest.raises(ValueError, match="non-decreasing"):
        llmkernels.attention_varlen(q, k, v, torch.tensor([0, 6, 5, 15]), cu, 9, 9)
    with pytest.raises(ValueError, match="packed length 15"):
        llmkernels.attention_varlen(q, k, v, torch.tensor([0, 5, 14]), torch.tensor([0, 5, 14]), 9, 9)


@pytest.mark.parametrize("sq,sk", [(7, 7), (9, 5), (5, 9)])
@pytest.mark.parametrize("is_causal", [False, True])
def test_sdpa_drop_in_matches_torch(sq, sk, is_causal):
    q = torch.randn(2, 4, sq, 16)
    k = torch.randn(2, 2, sk, 16)
    v = torch.randn(2, 2, sk, 16)
    ours = llmkernels.scaled_dot_product_attention(q, k, v, is_causal=is_causal, enable_gqa=True)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, enable_gqa=True))
    mask = torch.rand(sq, sk) > 0.2
    mask[:, 0] = True
    torch.testing.assert_close(
        llmkernels.scaled_dot_product_attention(q, k[:, :1].expand(2, 4, sk, 16), v[:, :1].expand(2, 4, sk, 16), attn_mask=mask),
        F.scaled_dot_product_attention(q, k[:, :1].expand(2, 4, sk, 16), v[:, :1].expand(2, 4, sk, 16), attn_mask=mask),
    )


@pytest.mark.parametrize("shapes", [((4,), (2, 4), (2, 4)), ((4,), (4,), (4,)), ((2, 4), (4,), (4,))])
def test_sdpa_drop_in_raises_torchs_error_for_a_low_rank_query(shapes):
    # It used to read query.shape[-2] before checking the rank: IndexError, not torch's error.
    q, k, v = (torch.randn(*shape) for shape in shapes)
    with pytest.raises(RuntimeError) as theirs:
        F.scaled_dot_product_attention(q, k, v, is_causal=True)
    with pytest.raises(RuntimeError, match="query") as ours:
        llmkernels.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert str(ours.value) == str(theirs.value)


def test_sdpa_drop_in_names_a_non_tensor_query():
    with pytest.raises(TypeError, match="query"):
        llmkernels.scaled_dot_product_attention([1.0], torch.randn(2, 4), torch.randn(2, 4))


CPU_BACKENDS = [b for b in ("reference", "cpp") if b in llmkernels.available_backends("cpu", "attention")]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_opcheck(backend):
    q, k, v, kwargs = _make(CASES[7], torch.float32, "cpu")
    args = (q.requires_grad_(True), k.requires_grad_(True), v.requires_grad_(True), 0.25, True, -1, -1, 0.0, None, kwargs["key_padding_mask"], backend)
    torch.library.opcheck(torch.ops.llmkernels.attention, args)
    q, k, v, _ = _make(CASES[6], torch.float32, "cpu")
    torch.library.opcheck(torch.ops.llmkernels.attention, (q, k, v, 0.25, False, 3, 2, 5.0, torch.rand(2, 2), None, backend))


@pytest.mark.parametrize("compiler", ["aot_eager", "inductor"])
def test_compile_fullgraph(compiler):
    q, k, v, _ = _make(CASES[1], torch.float32, "cpu")
    leaves = [t.requires_grad_(True) for t in (q, k, v)]
    assert_compiled_matches_eager(lambda a, b, c: llmkernels.attention(a * 2.0, b, c, causal=True, softcap=20.0), leaves, compiler)


def test_bf16_autocast_model_just_works():
    proj = torch.nn.Linear(32, 96)
    x = torch.randn(2, 7, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q, k, v = proj(x).view(2, 7, 3, 2, 16).permute(2, 0, 3, 1, 4)
        out = llmkernels.attention(q, k, v, causal=True)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert torch.isfinite(proj.weight.grad).all()


BAD = [
    (lambda q, k, v: (q[0], k, v), {}, "q must have 4 dimensions"),
    (lambda q, k, v: (q, k[..., :8], v[..., :8]), {}, "head_dim 8 but q has head_dim 16"),
    (lambda q, k, v: (q, k[:, :1].expand(2, 1, 5, 16), v), {}, "k and v must have the same shape"),
    (lambda q, k, v: (q[:, :3], k, v), {}, r"heads_q \(3\) must be a multiple of heads_kv \(2\)"),
    (lambda q, k, v: (q, k[:1], v[:1]), {}, "k has batch 1"),
    (lambda q, k, v: (q, k.double(), v.double()), {}, "k must have q's dtype"),
    (lambda q, k, v: (q, k, v), {"window": (-3, 0)}, r"window\[0\] must be >= 0"),
    (lambda q, k, v: (q, k, v), {"window": 4}, "window must be a pair"),
    (lambda q, k, v: (q, k, v), {"alibi_slopes": torch.ones(3)}, "alibi_slopes must be"),
    (lambda q, k, v: (q, k, v), {"key_padding_mask": torch.ones(2, 4, dtype=torch.bool)}, "key_padding_mask must be"),
    (lambda q, k, v: (q, k, v), {"softcap": float("nan")}, "softcap"),
]


@pytest.mark.parametrize("make,kwargs,match", BAD)
def test_bad_inputs(make, kwargs, match):
    q, k, v = torch.randn(2, 4, 5, 16), torch.randn(2, 2, 5, 16), torch.randn(2, 2, 5, 16)
    with pytest.raises(ValueError, match=match):
        llmkernels.attention(*make(q, k, v), **kwargs)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_decoding_with_the_heads_dimension_in_the_middle(backend):
    # A projection's output viewed as (B, Hq, 1, D) through a transpose: strided heads, packed by view.
    skip_unless_present("attention", "cpu", backend, torch.float32)
    q = torch.randn(2, 1, 8, 32).transpose(1, 2)
    k, v = torch.randn(2, 2, 45, 32), torch.randn(2, 2, 45, 32)
    with llmkernels.use_backend(backend):
        out, lse = llmkernels.attention(q, k, v, causal=True, return_lse=True)
    expected, expected_lse = naive(q.double(), k.double(), v.double(), causal=True)
    assert_close(out, expected, torch.float32)
    assert_close(lse, expected_lse, torch.float32)
