"""Op families. Importing a family registers its ops with torch and the backend registry."""

from llmkernels.ops import attention, cross_entropy, linear_cross_entropy, rotary, sinusoidal  # noqa: F401
from llmkernels.ops import distillation, linear, linear_distillation, rms_norm, swiglu  # noqa: F401
