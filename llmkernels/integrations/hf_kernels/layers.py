"""llmkernels' ops as layers in the shape the Hugging Face ``kernels`` package swaps in.

``kernelize`` replaces the ``forward`` of every module whose class transformers marked with
``@use_kernel_forward_from_hub(name)`` by the ``forward`` of the layer a mapping names. The layer is
never instantiated: its ``forward`` is bound to the model's own module, so it reads that module's
members (``self.weight``, ``self.variance_epsilon``). ``kernels`` therefore accepts only a class with
no constructor and no members but ``forward``, ``has_backward`` and ``can_torch_compile``, and a
``forward`` whose parameters match the replaced one's in number and kind.

Every layer here has a backward (the ops' autograd) and traces under ``torch.compile`` (the ops'
fake kernels), so one repository serves ``Mode.TRAINING``, ``Mode.INFERENCE`` and both with
``Mode.TORCH_COMPILE``. ``repository.kernel_mapping()`` maps transformers' layer names to these.
"""

from __future__ import annotations

from torch import nn

import llmkernels
from llmkernels.integrations.transformers.patches import _rotate


class RMSNorm(nn.Module):
    """transformers' ``RMSNorm`` (Llama, Qwen2/3, Mistral and the other models that mark it):
    ``weight * x / sqrt(mean(x^2) + variance_epsilon)``, the math in float32, the result in x's dtype."""

    has_backward = True
    can_torch_compile = True

    def forward(self, hidden_states):
        return llmkernels.rms_norm(hidden_states, self.weight, eps=self.variance_epsilon)


class ApplyRotary(nn.Module):
    """transformers' ``rotary_pos_emb`` (``apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1)``):
    q and k rotated in one ``llmkernels.apply_rotary`` call. ``unsqueeze_dim`` 1 is the
    (batch, heads, seq, head_dim) layout, 2 the (batch, seq, heads, head_dim) one."""

    has_backward = True
    can_torch_compile = True

    def forward(self, q, k, cos, sin, unsqueeze_dim=1):
        if unsqueeze_dim == 1:
            return _rotate(q, k, cos, sin)
        if unsqueeze_dim == 2:  # the op takes heads before positions: a transposed view, no copy
            q_out, k_out = _rotate(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
            return q_out.transpose(1, 2), k_out.transpose(1, 2)
        raise ValueError(f"apply_rotary_pos_emb: unsqueeze_dim must be 1 (batch, heads, seq, head_dim) or 2 "
                         f"(batch, seq, heads, head_dim); got {unsqueeze_dim!r}")


class SiluAndMul(nn.Module):
    """The ``SiluAndMul`` layer convention: x = [gate | up] on the last dimension,
    ``silu(gate) * up`` through ``llmkernels.swiglu``'s packed form (one gradient buffer)."""

    has_backward = True
    can_torch_compile = True

    def forward(self, x):
        return llmkernels.swiglu(x)


class GeluTanhAndMul(nn.Module):
    """The ``GeluTanhAndMul`` layer convention: x = [gate | up], ``gelu_tanh(gate) * up``
    through ``llmkernels.geglu``'s packed form."""

    has_backward = True
    can_torch_compile = True

    def forward(self, x):
        return llmkernels.geglu(x, approximate="tanh")
