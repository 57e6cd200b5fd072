"""opcheck, torch.compile, autocast and bad-input errors for the positional-encoding ops."""

import pytest
import torch

import llmkernels
from tests.helpers import assert_compiled_matches_eager

CPU_BACKENDS = [b for b in ("reference", "cpp") if b in llmkernels.available_backends("cpu")]


def _rotary_args():
    q = torch.randn(2, 3, 5, 12, requires_grad=True)
    k = torch.randn(2, 1, 5, 12, requires_grad=True)
    cos, sin = llmkernels.rope_cache(8, 8)
    return q, k, cos, sin, torch.tensor([[0, 2, 4, 6, 7]])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_opcheck(backend):
    q, k, cos, sin, positions = _rotary_args()
    ops = torch.ops.llmkernels
    torch.library.opcheck(ops.apply_rotary, (q, k, cos, sin, positions, False, backend))
    torch.library.opcheck(ops.apply_rotary_backward, (q.detach(), k.detach(), cos, sin, None, True, backend))
    torch.library.opcheck(ops.rotary_embedding, (q, cos, sin, positions[0], True, backend))
    torch.library.opcheck(ops.rotary_embedding_backward, (q.detach(), cos, sin, None, False, backend))
    torch.library.opcheck(ops.rotary_embedding_, (q.detach().clone(), cos, sin, None, False, backend))
    x = torch.randn(2, 5, 9, requires_grad=True)
    torch.library.opcheck(ops.add_sinusoidal_position_encoding, (x, positions, 100.0, 2.0, backend))
    torch.library.opcheck(ops.add_sinusoidal_position_encoding_backward, (x.detach(), 2.0, backend))


@pytest.mark.parametrize("compiler", ["aot_eager", "inductor"])
def test_compile_fullgraph_forward_backward(compiler):
    q, k, cos, sin, positions = _rotary_args()
    x = torch.randn(2, 5, 9, requires_grad=True)

    def step(q, k, x):
        q_rot, k_rot = llmkernels.apply_rotary(q, k, cos, sin, positions)
        single = llmkernels.rotary_embedding(q, cos, sin, interleaved=True)
        return q_rot, k_rot, single, llmkernels.add_sinusoidal_position_encoding(x, positions, scale=0.5)

    assert_compiled_matches_eager(step, [q, k, x], compiler)


def test_module_under_bf16_autocast():
    rotary = llmkernels.nn.RotaryEmbedding(8, max_positions=16)
    project = torch.nn.Linear(16, 2 * 16)
    rotary.to(torch.bfloat16)  # the tables stay float32
    assert rotary.cos.dtype == torch.float32
    x = torch.randn(2, 5, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q, k = project(x).view(2, 5, 2, 2, 8).permute(2, 0, 3, 1, 4)
        q_rot, k_rot = rotary(q, k)
    assert q_rot.dtype == torch.bfloat16 and k_rot.dtype == torch.bfloat16
    (q_rot.float().sum() + k_rot.float().sum()).backward()
    assert project.weight.grad is not None and torch.isfinite(project.weight.grad).all()


BAD_ROTARY = [
    (lambda q, c, s: (q[0], q, c, s, None), ValueError, "q must have 4 dimensions"),
    (lambda q, c, s: (q, q[:, :, :, :6], c, s, None), ValueError, r"k dimension 3 must be 12"),
    (lambda q, c, s: (q, q.double(), c, s, None), ValueError, "k must have q's dtype"),
    (lambda q, c, s: (q.int(), q.int(), c, s, None), ValueError, "q must have dtype in"),
    (lambda q, c, s: (q, q, torch.randn(8, 7), torch.randn(8, 7), None), ValueError, "exceeds q's head_dim 12"),
    (lambda q, c, s: (q, q, c, s[:, :3], None), ValueError, "cos and sin must have the same shape"),
    (lambda q, c, s: (q, q, c[:3], s[:3], None), ValueError, "holds only 3 positions"),
    (lambda q, c, s: (q, q, c, s, torch.tensor([0, 1, 2, 3, 8])), ValueError, r"position_ids must lie in \[0, 8\)"),
    (lambda q, c, s: (q, q, c, s, torch.tensor([0, 1, -2, 3, 4])), ValueError, r"position_ids must lie"),
    (lambda q, c, s: (q, q, c, s, torch.arange(4)), ValueError, "position_ids dimension -1 must be 5"),
    (lambda q, c, s: (q, q, c, s, torch.zeros(3, 5, dtype=torch.long)), ValueError, r"\(batch, seq\)"),
    (lambda q, c, s: (q, q, c, s, torch.zeros(5)), ValueError, "position_ids must have dtype"),
    (lambda q, c, s: (q, q, c.to("meta"), s.to("meta"), None), ValueError, "cos is on meta"),
]


@pytest.mark.parametrize("make_args,error,match", BAD_ROTARY)
def test_bad_rotary_inputs(make_args, error, match):
    q = torch.randn(2, 3, 5, 12)
    cos, sin = llmkernels.rope_cache(8, 8)
    with pytest.raises(error, match=match):
        llmkernels.apply_rotary(*make_args(q, cos, sin))


def test_bad_rotary_options():
    q = torch.randn(1, 1, 2, 8)
    cos, sin = llmkernels.rope_cache(2, 8)
    with pytest.raises(TypeError, match="interleaved must be a bool"):
        llmkernels.apply_rotary(q, q, cos, sin, interleaved="yes")
    with pytest.raises(ValueError, match="do not compute gradients for the tables"):
        llmkernels.rotary_embedding(q, cos.requires_grad_(), sin)
    with pytest.raises(ValueError, match="rotary_dim must be a positive even int"):
        llmkernels.nn.RotaryEmbedding(7, 16)


def test_bad_sinusoidal_inputs():
    x = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match="x must have 3 dimensions"):
        llmkernels.add_sinusoidal_position_encoding(x[0])
    with pytest.raises(ValueError, match="position_ids must be >= 0"):
        llmkernels.add_sinusoidal_position_encoding(x, torch.tensor([0, 1, -1, 2, 3]))
    with pytest.raises(ValueError, match="base must be"):
        llmkernels.add_sinusoidal_position_encoding(x, base=1.0)
    with pytest.raises(ValueError, match="scale must be a finite number"):
        llmkernels.add_sinusoidal_position_encoding(x, scale=float("nan"))
    with pytest.raises(ValueError, match="x must have dtype"):
        llmkernels.add_sinusoidal_position_encoding(x.long())
    with pytest.raises(ValueError, match="d_model must be"):
        llmkernels.sinusoidal_table(4, 0)
