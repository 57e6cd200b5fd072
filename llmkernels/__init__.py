"""llmkernels: fused kernels for the hot spots of transformer training.

Each operation is a real ``torch.ops.llmkernels.*`` operator with a plain-PyTorch reference
backend and, where built or installed, ``cpp`` (CPU), ``triton`` and ``cuda`` kernels. The
functions below are thin wrappers that validate arguments and call those ops.
"""

__version__ = "0.1.0"

import torch  # noqa: F401  (the extension, when built, links against torch: load it first)

from llmkernels import ops  # noqa: F401  (registers the ops)
from llmkernels.backends import BACKEND_NAMES, available_backends, use_backend
from llmkernels.diagnostics import info
from llmkernels.ops.attention.api import attention, attention_varlen, scaled_dot_product_attention
from llmkernels.ops.cross_entropy.api import cross_entropy
from llmkernels.ops.linear.api import linear
from llmkernels.ops.distillation.api import distillation_loss, topk_distillation_loss, topk_logprobs
from llmkernels.ops.linear_distillation.api import linear_distillation_loss, linear_topk_distillation_loss, linear_topk_logprobs
from llmkernels.ops.linear_cross_entropy.api import linear_cross_entropy
from llmkernels.ops.rms_norm.api import rms_norm
from llmkernels.ops.rotary.api import apply_rotary, rotary_embedding
from llmkernels.ops.rotary.cache import rope_cache
from llmkernels.ops.sinusoidal.api import add_sinusoidal_position_encoding, sinusoidal_table
from llmkernels.ops.swiglu.api import geglu, swiglu
from llmkernels import nn  # noqa: E402  (modules build on the functions above)

__all__ = [
    "BACKEND_NAMES",
    "__version__",
    "add_sinusoidal_position_encoding",
    "apply_rotary",
    "attention",
    "attention_varlen",
    "available_backends",
    "cross_entropy",
    "distillation_loss",
    "geglu",
    "info",
    "linear",
    "linear_cross_entropy",
    "linear_distillation_loss",
    "linear_topk_distillation_loss",
    "linear_topk_logprobs",
    "nn",
    "rms_norm",
    "rope_cache",
    "rotary_embedding",
    "scaled_dot_product_attention",
    "sinusoidal_table",
    "swiglu",
    "topk_distillation_loss",
    "topk_logprobs",
    "use_backend",
]

# Last, once every op is defined: eager calls then never import torch._dynamo (see there).
from llmkernels.ops.common import lazy_dynamo as _lazy_dynamo  # noqa: E402

_lazy_dynamo.install()
