"""Sinusoidal position encoding: the paper's formula, and every backend against the reference."""

import math

import pytest
import torch

import llmkernels
from llmkernels.ops.sinusoidal import reference
from tests.helpers import assert_close, backend_cases, skip_unless_present


def _paper_table(num_positions, d_model, base):
    # PE(pos, 2i) = sin(pos / base^(2i/d)), PE(pos, 2i+1) = cos(pos / base^(2i/d)), in float64.
    table = torch.empty(num_positions, d_model, dtype=torch.float64)
    for pos in range(num_positions):
        for col in range(d_model):
            angle = pos / base ** ((col - col % 2) / d_model)
            table[pos, col] = math.sin(angle) if col % 2 == 0 else math.cos(angle)
    return table


@pytest.mark.parametrize("d_model", [1, 7, 16, 33])
def test_table_is_the_papers_encoding(d_model):
    table = llmkernels.sinusoidal_table(50, d_model, base=10000.0)
    assert table.shape == (50, d_model) and table.dtype == torch.float32
    # float32 angles: the error grows with pos * eps (50 * 6e-8).
    torch.testing.assert_close(table.double(), _paper_table(50, d_model, 10000.0), rtol=0, atol=1e-5)
    # sin on even columns and cos on odd ones, never their sum.
    assert table[0, 0] == 0 and (d_model == 1 or table[0, 1] == 1)


def _expected(x, positions, base, scale):
    pos = None if positions is None else (positions if positions.dim() == 2 else positions[None]).long()
    return reference.add_encoding(x.double(), pos, base, scale)


CASES = [  # (batch, seq, d_model, positions)
    (1, 1, 8, None),
    (2, 7, 33, "batch"),
    (3, 127, 64, "shared"),
    (1, 1000, 16, "1d"),
]


@pytest.mark.parametrize("device,backend,dtype", backend_cases("add_sinusoidal_position_encoding"))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(str(v) for v in c))
def test_add_encoding_forward_backward(device, backend, dtype, case):
    skip_unless_present("add_sinusoidal_position_encoding", device, backend, dtype)
    batch, seq, d_model, kind = case
    if backend == "triton" and device == "cpu" and batch * seq > 64:
        pytest.skip("the Triton interpreter runs one program at a time: small shapes only")
    x = torch.randn(batch, seq, d_model, device=device, dtype=dtype, requires_grad=True)
    positions = {
        None: None,
        "batch": torch.randint(0, 300, (batch, seq), device=device),
        "shared": torch.randint(0, 300, (1, seq), device=device, dtype=torch.int32),
        "1d": torch.arange(seq, device=device) + 5,
    }[kind]
    with llmkernels.use_backend(backend):
        out = llmkernels.add_sinusoidal_position_encoding(x, positions, base=1000.0, scale=1.5)
    assert out.dtype == dtype
    expected = _expected(x.detach(), positions, 1000.0, 1.5)
    assert_close(out, expected, dtype)
    grad = torch.randn_like(out)
    out.backward(grad)
    assert_close(x.grad, grad.double() * 1.5, dtype)


def test_default_positions_equal_table_rows():
    x = torch.zeros(2, 10, 12)
    out = llmkernels.add_sinusoidal_position_encoding(x)
    torch.testing.assert_close(out, llmkernels.sinusoidal_table(10, 12).expand(2, 10, 12))


def test_strided_input():
    x = torch.randn(9, 2, 16).transpose(0, 1)  # (batch, seq, d) view, not contiguous
    for backend in llmkernels.available_backends("cpu", "add_sinusoidal_position_encoding"):
        with llmkernels.use_backend(backend):
            out = llmkernels.add_sinusoidal_position_encoding(x, scale=2.0)
        assert_close(out, _expected(x, None, 10000.0, 2.0), torch.float32)


def test_module():
    module = llmkernels.nn.SinusoidalPositionEncoding(16, scale=4.0)
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(module(x), x * 4.0 + llmkernels.sinusoidal_table(5, 16))
    with pytest.raises(ValueError, match=r"\(batch, seq, 16\)"):
        module(torch.randn(2, 5, 8))


def test_backward_runs_on_the_forward_backend(monkeypatch):
    from llmkernels import backends

    op = "add_sinusoidal_position_encoding"
    present = [b for b in llmkernels.available_backends("cpu", op) if b != "reference"]
    chosen = present[0] if present else "reference"
    seen = []
    original = backends.resolve

    def spy(name, device, dtype, requested="auto"):
        seen.append((name, requested))
        return original(name, device, dtype, requested)

    monkeypatch.setattr(backends, "resolve", spy)
    x = torch.randn(2, 3, 8, requires_grad=True)
    with llmkernels.use_backend(chosen):
        out = llmkernels.add_sinusoidal_position_encoding(x, scale=2.0)
    with llmkernels.use_backend("reference"):  # the block has ended; another one is active
        out.backward(torch.ones_like(out))
    assert seen == [(op, chosen), (op, chosen)]
    torch.testing.assert_close(x.grad, torch.full_like(x, 2.0))


def test_backward_op_refuses_a_backend_that_is_absent():
    grad = torch.randn(2, 3, 8)
    with pytest.raises(RuntimeError, match=r"backend 'cuda' does not run on cpu.*present: reference"):
        torch.ops.llmkernels.add_sinusoidal_position_encoding_backward(grad, 2.0, "cuda")
