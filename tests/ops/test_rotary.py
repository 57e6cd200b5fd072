"""Rotary embedding: every present backend against the float64 reference, forward and backward."""

import pytest
import torch

import llmkernels
from llmkernels.ops.rotary import reference
from tests.helpers import assert_close, backend_cases, skip_unless_present

# (batch, heads_q, heads_k, seq, head_dim, rotary_dim, positions, max_positions)
SHAPES = [
    (1, 1, 1, 1, 16, 16, None, 4),
    (2, 4, 2, 7, 18, 8, "shared", 32),
    (3, 3, 1, 127, 64, 64, "batch", 200),
    (1, 2, 2, 1000, 32, 16, "1d", 1000),
    (2, 2, 1, 5, 256, 128, None, 5),
]


def _positions(kind, batch, seq, max_positions, device):
    if kind is None:
        return None
    if kind == "1d":
        return torch.randperm(max_positions, device=device)[:seq]
    rows = 1 if kind == "shared" else batch
    return torch.randint(0, max_positions, (rows, seq), device=device, dtype=torch.int32)


def _inputs(shape, dtype, device):
    batch, hq, hk, seq, head_dim, rotary_dim, kind, max_positions = shape
    q = torch.randn(batch, hq, seq, head_dim, device=device, dtype=dtype)
    k = torch.randn(batch, hk, seq, head_dim, device=device, dtype=dtype)
    cos, sin = llmkernels.rope_cache(max_positions, rotary_dim, base=500.0, device=device)
    return q, k, cos, sin, _positions(kind, batch, seq, max_positions, device)


def _expected(x, cos, sin, positions, interleaved, conjugate=False):
    pos = None if positions is None else (positions if positions.dim() == 2 else positions[None]).long()
    return reference.rotate(x.double(), cos.double(), sin.double(), pos, interleaved, conjugate)


@pytest.mark.parametrize("device,backend,dtype", backend_cases("apply_rotary"))
@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(str(v) for v in s[:6]) + f"-{s[6]}")
def test_apply_rotary_forward_backward(device, backend, dtype, interleaved, shape):
    skip_unless_present("apply_rotary", device, backend, dtype)
    if backend == "triton" and device == "cpu" and shape[0] * shape[3] > 64:
        pytest.skip("the Triton interpreter runs one program at a time: small shapes only")
    q, k, cos, sin, positions = _inputs(shape, dtype, device)
    q.requires_grad_(True)
    k.requires_grad_(True)
    with llmkernels.use_backend(backend):
        q_out, k_out = llmkernels.apply_rotary(q, k, cos, sin, positions, interleaved=interleaved)
    assert q_out.dtype == dtype and k_out.dtype == dtype
    assert_close(q_out, _expected(q.detach(), cos, sin, positions, interleaved), dtype)
    assert_close(k_out, _expected(k.detach(), cos, sin, positions, interleaved), dtype)
    grad_q, grad_k = torch.randn_like(q_out), torch.randn_like(k_out)
    torch.autograd.backward((q_out, k_out), (grad_q, grad_k))  # outside the block: same backend
    assert_close(q.grad, _expected(grad_q, cos, sin, positions, interleaved, conjugate=True), dtype)
    assert_close(k.grad, _expected(grad_k, cos, sin, positions, interleaved, conjugate=True), dtype)


@pytest.mark.parametrize("device,backend,dtype", backend_cases("rotary_embedding", dtypes=(torch.float32, torch.float16)))
@pytest.mark.parametrize("interleaved", [False, True])
def test_rotary_embedding_strided_input_and_output_layout(device, backend, dtype, interleaved):
    skip_unless_present("rotary_embedding", device, backend, dtype)
    # (batch, seq, heads, head_dim) viewed as (batch, heads, seq, head_dim): not contiguous.
    x = torch.randn(2, 9, 3, 20, device=device, dtype=dtype).transpose(1, 2)
    cos, sin = llmkernels.rope_cache(9, 12, device=device)
    with llmkernels.use_backend(backend):
        out = llmkernels.rotary_embedding(x, cos, sin, interleaved=interleaved)
    assert out.stride() == x.stride()  # keeps the caller's layout
    assert_close(out, _expected(x, cos, sin, None, interleaved), dtype)
    # A last dimension that is not contiguous is accepted too.
    y = torch.randn(2, 3, 9, 20, device=device, dtype=dtype).transpose(-1, -2).contiguous().transpose(-1, -2)
    with llmkernels.use_backend(backend):
        out = llmkernels.rotary_embedding(y, cos, sin, interleaved=interleaved)
    assert_close(out, _expected(y, cos, sin, None, interleaved), dtype)


@pytest.mark.parametrize("device,backend,dtype", backend_cases("rotary_embedding", dtypes=(torch.float32, torch.bfloat16)))
def test_rotary_embedding_inplace(device, backend, dtype):
    skip_unless_present("rotary_embedding", device, backend, dtype)
    x = torch.randn(2, 3, 11, 24, device=device, dtype=dtype)
    cos, sin = llmkernels.rope_cache(11, 16, device=device)
    expected = _expected(x, cos, sin, None, False)
    storage = x.data_ptr()
    with llmkernels.use_backend(backend):
        out = llmkernels.rotary_embedding(x, cos, sin, inplace=True)
    assert out is x and x.data_ptr() == storage
    assert_close(x, expected, dtype)
    # With autograd: a non-leaf that requires grad is rotated in place and differentiated.
    leaf = torch.randn(2, 3, 11, 24, device=device, dtype=dtype, requires_grad=True)
    with llmkernels.use_backend(backend):
        y = llmkernels.rotary_embedding(leaf * 1.0, cos, sin, inplace=True)
    grad = torch.randn_like(y)
    y.backward(grad)
    assert_close(leaf.grad, _expected(grad, cos, sin, None, False, conjugate=True), dtype)
    with pytest.raises(RuntimeError, match="leaf"):
        llmkernels.rotary_embedding(leaf, cos, sin, inplace=True)


@pytest.mark.parametrize("interleaved", [False, True])
def test_reference_gradcheck_float64(interleaved):
    q = torch.randn(2, 3, 5, 10, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 1, 5, 10, dtype=torch.float64, requires_grad=True)
    cos, sin = llmkernels.rope_cache(8, 6, dtype=torch.float64)
    positions = torch.tensor([[0, 3, 1, 7, 2]])
    with llmkernels.use_backend("reference"):
        assert torch.autograd.gradcheck(
            lambda a, b: llmkernels.apply_rotary(a, b, cos, sin, positions, interleaved=interleaved), (q, k)
        )
        assert torch.autograd.gradgradcheck(
            lambda a: llmkernels.rotary_embedding(a, cos, sin, positions, interleaved=interleaved), (q,)
        )


def test_reference_is_the_rotation_formula():
    # The spec itself, checked against the NeoX/Llama rotate_half formulation written out here.
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64)
    cos, sin = llmkernels.rope_cache(6, 8, dtype=torch.float64)
    full_cos, full_sin = torch.cat((cos, cos), -1), torch.cat((sin, sin), -1)
    rotate_half = torch.cat((-x[..., 4:], x[..., :4]), -1)
    torch.testing.assert_close(reference.rotate(x, cos, sin, None, False, False), x * full_cos + rotate_half * full_sin)
    # GPT-J: pairs (2i, 2i+1) rotate by angle i.
    out = reference.rotate(x, cos, sin, None, True, False)
    a, b = x[..., 0::2], x[..., 1::2]
    torch.testing.assert_close(out[..., 0::2], a * cos - b * sin)
    torch.testing.assert_close(out[..., 1::2], b * cos + a * sin)


@pytest.mark.parametrize("backend", ["reference", "cpp", "triton"])
def test_bf16_input_with_fp32_tables_returns_bf16(backend):
    skip_unless_present("apply_rotary", "cpu", backend, torch.float16)
    if backend == "triton":
        with pytest.raises(RuntimeError, match="refuses bfloat16"):
            with llmkernels.use_backend("triton"):
                llmkernels.apply_rotary(*_inputs(SHAPES[1], torch.bfloat16, "cpu")[:4])
        return
    q, k, cos, sin, positions = _inputs(SHAPES[1], torch.bfloat16, "cpu")
    with llmkernels.use_backend(backend):
        q_out, _ = llmkernels.apply_rotary(q, k, cos.to(torch.bfloat16), sin.to(torch.bfloat16), positions)
    assert q_out.dtype == torch.bfloat16
    assert_close(q_out, _expected(q, cos.to(torch.bfloat16), sin.to(torch.bfloat16), positions, False))


def test_empty_inputs():
    cos, sin = llmkernels.rope_cache(4, 8)
    for backend in llmkernels.available_backends("cpu", "apply_rotary"):
        with llmkernels.use_backend(backend):
            q, k = llmkernels.apply_rotary(torch.randn(0, 2, 3, 8), torch.randn(0, 1, 3, 8), cos, sin)
            assert q.shape == (0, 2, 3, 8) and k.shape == (0, 1, 3, 8)
            assert llmkernels.rotary_embedding(torch.randn(1, 2, 0, 8), cos, sin).shape == (1, 2, 0, 8)
