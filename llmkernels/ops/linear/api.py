"""The public linear function: a thin wrapper that validates, casts under autocast, calls the op."""

from __future__ import annotations

import torch

from llmkernels import backends
from llmkernels.ops.common.autocast import autocast_inputs
from llmkernels.ops.common.checks import check_tensor_types


def linear(x, weight, bias=None):
    """``x @ weight.T + bias``, as ``F.linear``: x (..., in_features), weight (out_features,
    in_features), bias (out_features,) or None; the result is (..., out_features).

    On the ``cpp`` backend the forward product and both backward products (``grad @ weight`` and
    ``grad.T @ x``) run on llmkernels' packed CPU GEMM in float32 where the CPU has AVX2 or AVX-512 (MKL runs
    the transposed products below its plain rate); other dtypes and small products, and the
    ``reference`` backend (what runs on a GPU), are torch's GEMMs. Under autocast the inputs are
    cast to the region's dtype, as ``F.linear``'s are. A frozen weight (or input) gets no gradient
    GEMM. Only x and weight are kept for the backward.
    """
    check_tensor_types(x=x, weight=weight, bias=bias)
    x, weight, bias = autocast_inputs(x.device.type, x, weight, bias)
    return torch.ops.llmkernels.linear(x, weight, bias, backends.requested_backend())
