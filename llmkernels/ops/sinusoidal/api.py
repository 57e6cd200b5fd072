"""Public sinusoidal position-encoding functions."""

from __future__ import annotations

import torch

from llmkernels import backends
from llmkernels.ops.common.checks import check_tensor, check_tensor_types, is_finite_number, is_symbolic
from llmkernels.ops.sinusoidal import reference


def _check_base(base) -> float:
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not is_finite_number(base) or base <= 1:
        raise ValueError(f"base must be a finite number > 1; got {base!r}")
    return float(base)


def sinusoidal_table(num_positions, d_model, *, base=10000.0, dtype=torch.float32, device=None):
    """The (num_positions, d_model) sinusoidal encoding of "Attention Is All You Need".

    PE(pos, 2i) = sin(pos / base^(2i/d_model)) and PE(pos, 2i+1) = cos(pos / base^(2i/d_model)):
    sin on even columns, cos on odd ones. This is the paper's encoding; a common write-up that
    sums sin and cos into a single value per column computes something else.
    """
    for name, value in (("num_positions", num_positions), ("d_model", d_model)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "num_positions" else 1):
            raise ValueError(f"{name} must be a {'non-negative' if name == 'num_positions' else 'positive'} int; got {value!r}")
    positions = torch.arange(num_positions, device=device)
    return reference.encoding(positions, d_model, _check_base(base)).to(dtype)


def add_sinusoidal_position_encoding(x, position_ids=None, *, base=10000.0, scale=1.0):
    """x * scale + PE[positions] for x (batch, seq, d_model), PE as in ``sinusoidal_table``.

    ``position_ids`` is (seq,) or (batch, seq) ints, default ``arange(seq)``. Computed in float32,
    returned in x's dtype. (Not the sin+cos-summed variant some write-ups give: see
    ``sinusoidal_table``.)
    """
    base = _check_base(base)
    if isinstance(scale, bool) or not (isinstance(scale, (int, float)) or is_symbolic(scale)) or not is_finite_number(scale):
        raise ValueError(f"scale must be a finite number; got {scale!r}")
    # The op runs arguments.check_arguments; here only what its schema would refuse first.
    check_tensor("x", x)
    check_tensor_types(position_ids=position_ids)
    backend = backends.requested_backend()
    return torch.ops.llmkernels.add_sinusoidal_position_encoding(x, position_ids, base, float(scale), backend)
