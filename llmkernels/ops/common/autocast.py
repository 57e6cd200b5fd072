"""The autocast policy of the ops that torch runs in lower precision (attention, as torch's
``scaled_dot_product_attention``): under autocast, floating-point tensors on the autocast device
are cast to the autocast dtype first, float64 excepted, exactly as torch's autocast does.

A cast in the public wrapper rather than ``torch.library.register_autocast``: that one casts to a
fixed dtype, while torch follows the autocast region's dtype (bf16 or fp16).
"""

from __future__ import annotations

import torch


def autocast_inputs(device_type: str, *tensors):
    """``tensors`` as the op sees them under the current autocast state of ``device_type``."""
    if not torch.is_autocast_enabled(device_type):
        return tensors
    dtype = torch.get_autocast_dtype(device_type)
    return tuple(
        t.to(dtype)
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64 and t.device.type == device_type
        else t
        for t in tensors
    )
