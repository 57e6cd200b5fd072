"""The gated MLP of Llama-style decoders on the fused swiglu op."""

from __future__ import annotations

import torch
from torch import nn

import llmkernels
from llmkernels import backends
from llmkernels.nn import recompute, torch_baseline
from llmkernels.nn.linear import Linear


class SwiGLUMLP(nn.Module):
    """``down(silu(gate) * up)`` with ``gate, up`` the halves of one fused ``gate_up`` projection.

    ``gate_up = nn.Linear(d_model, 2 * hidden)`` holds [gate | up] in that order and ``down =
    nn.Linear(hidden, d_model)``: the parameter names (``gate_up.weight``, ``down.weight``) and
    layout of the GPT's checkpoints. ``ops="llmkernels"`` runs ``llmkernels.swiglu`` on the packed
    projection output (one pass; its backward recomputes sigmoid and writes one gradient buffer,
    and silu(gate) is never stored; nor is swiglu's output, which ``down`` would save for its weight
    gradient: the backward runs swiglu again on the saved gate_up); ``ops="torch"`` runs PyTorch's ``F.silu(gate) * up``.
    """

    def __init__(self, d_model: int, hidden: int, *, bias: bool = False, ops: str = "llmkernels",
                 device=None, dtype=None):
        super().__init__()
        self.ops = torch_baseline.check_ops(ops)
        self.gate_up = Linear(d_model, 2 * hidden, bias=bias, ops=ops, device=device, dtype=dtype)
        self.down = Linear(hidden, d_model, bias=bias, ops=ops, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate_up = self.gate_up(x)
        if self.ops == "torch":
            return self.down(torch_baseline.swiglu(*gate_up.chunk(2, dim=-1)))
        activated = llmkernels.swiglu(gate_up)
        # down saves its input for its weight gradient: keep the recipe instead (swiglu again on
        # the gate_up the swiglu op saved anyway), a tensor of hidden columns a row less.
        backend, kept = backends.requested_backend(), gate_up.detach()

        def activated_again():
            with llmkernels.use_backend(backend):
                return llmkernels.swiglu(kept)

        with recompute.saved(activated, activated_again, (gate_up,)):
            return self.down(activated)
