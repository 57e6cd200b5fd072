"""``mark_layers(model)``: the ``kernels`` marks transformers puts on a model's layers, where it did not.

transformers marks its layers for ``kernelize`` only while its ``kernels`` integration is on: the
installed ``kernels`` inside the version range that transformers release accepts (5.24 accepts
0.18.2 to 0.19) and ``USE_HUB_KERNELS`` not off. Otherwise the classes carry no marks and
``kernelize`` finds nothing to swap. ``mark_layers`` puts the same marks with ``kernels``' own public
functions, exactly where transformers' source has them for the families below:

* ``@use_kernel_forward_from_hub("RMSNorm")`` on the RMSNorm class (``replace_kernel_forward_from_hub``);
* ``@use_kernel_forward_from_hub("rotary_pos_emb")`` on the modeling module's
  ``apply_rotary_pos_emb`` (which turns the function into a module-like object the attention
  forward calls as before), and ``@use_kernelized_func`` on the attention modules (their
  ``_kernel_funcs``, which is where ``kernelize`` looks for it).

A mark alone changes no result: it only names the layer for ``kernelize``. Like transformers' own,
the marks are on classes and modeling modules, so they hold for every model of the family in the
process; ``undo()`` of the handle it returns removes them (a forward that ``kernelize`` already swapped stays swapped).
"""

from __future__ import annotations

import inspect
import sys

from kernels import replace_kernel_forward_from_hub, use_kernel_forward_from_hub

from llmkernels.integrations.transformers.patches import PatchHandle

# model_type -> the layer names transformers marks in that family's modeling file.
MARKED = {
    "llama": ("RMSNorm", "rotary_pos_emb"),
    "qwen2": ("RMSNorm", "rotary_pos_emb"),
    "qwen3": ("RMSNorm", "rotary_pos_emb"),
    "mistral": ("RMSNorm", "rotary_pos_emb"),
    "gemma2": ("rotary_pos_emb",),  # its RMSNorm scales by (1 + weight) and is not marked
}


def _mark_class(marks: PatchHandle, cls, name: str) -> None:
    if "kernel_layer_name" in cls.__dict__:  # transformers (or an earlier call) marked it already
        return
    replace_kernel_forward_from_hub(cls, name)

    def restore():
        for attribute in ("kernel_layer_name", "kernel_condition"):
            if attribute in cls.__dict__:
                delattr(cls, attribute)

    marks._undo.append(restore)
    marks.applied.append(f"{cls.__name__}: {name}")


def _rotary_func(marks: PatchHandle, modeling):
    """The modeling module's ``apply_rotary_pos_emb`` as a marked function object (made once)."""
    function = modeling.apply_rotary_pos_emb
    if not inspect.isfunction(function):  # already a marked object
        return function
    marked = use_kernel_forward_from_hub("rotary_pos_emb")(function)
    modeling.apply_rotary_pos_emb = marked
    marks._undo.append(lambda: setattr(modeling, "apply_rotary_pos_emb", function))
    marks.applied.append(f"{modeling.__name__}.apply_rotary_pos_emb: rotary_pos_emb")
    return marked


def mark_layers(model) -> PatchHandle:
    """Mark ``model``'s layers for ``kernels.kernelize`` as transformers would (see the module
    docstring); ``config.model_type`` must be one of ``MARKED``'s. Returns a ``PatchHandle`` whose
    ``applied`` lists what was marked ("Class: layer name") and whose ``undo()`` removes it."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in MARKED:
        raise ValueError(f"mark_layers supports config.model_type in {', '.join(MARKED)}; got {model_type!r}")
    names = MARKED[model_type]
    marks = PatchHandle(model)
    try:
        for module in model.modules():
            cls = type(module)
            if "RMSNorm" in names and cls.__name__.endswith("RMSNorm") and hasattr(module, "variance_epsilon"):
                _mark_class(marks, cls, "RMSNorm")
            elif "rotary_pos_emb" in names and cls.__name__.endswith("Attention") and hasattr(module, "q_proj"):
                modeling = sys.modules[cls.__module__]
                funcs = module.__dict__.setdefault("_kernel_funcs", {})
                # transformers files its own mark under the layer name: look for either
                if not any(getattr(f, "kernel_layer_name", None) == "rotary_pos_emb" for f in funcs.values()):
                    funcs["apply_rotary_pos_emb"] = _rotary_func(marks, modeling)
                    marks._undo.append(lambda funcs=funcs: funcs.pop("apply_rotary_pos_emb", None))
    except Exception:
        marks.undo()
        raise
    return marks
