"""Hugging Face transformers drop-in: ``import llmkernels.integrations.transformers`` registers the
attention implementation ``"llmkernels"`` (and its mask function), so that

    model = AutoModelForCausalLM.from_config(config, attn_implementation="llmkernels")

or ``model.set_attn_implementation("llmkernels")`` runs every attention layer on
``llmkernels.attention``. What the kernel cannot serve exactly falls back to transformers' own
SDPA path (see ``attention.py``). transformers is an optional extra (``llmkernels[transformers]``).
"""

from llmkernels.extras import require

require("transformers", "llmkernels.integrations.transformers")

from llmkernels.integrations.transformers.attention import (  # noqa: E402
    IMPLEMENTATION, attention_forward, attention_mask, register,
)

from llmkernels.integrations.transformers.patches import (  # noqa: E402
    SUPPORTED_MODEL_TYPES, PatchHandle, apply_llmkernels,
)

register()

__all__ = ["IMPLEMENTATION", "SUPPORTED_MODEL_TYPES", "PatchHandle", "apply_llmkernels", "attention_forward",
           "attention_mask", "register"]
