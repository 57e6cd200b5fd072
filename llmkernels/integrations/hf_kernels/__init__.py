"""llmkernels' rotary, RMSNorm and gated activations as layers for the Hugging Face ``kernels``
package, from a local repository (nothing is downloaded)::

    from kernels import Mode, kernelize, use_kernel_mapping
    from llmkernels.integrations.hf_kernels import kernel_mapping, mark_layers

    mark_layers(model)  # only where transformers did not mark them itself (see marks.py)
    with use_kernel_mapping(kernel_mapping()):
        model = kernelize(model, mode=Mode.TRAINING, device="cpu")

``kernelize`` swaps the forward of every layer transformers marked (``RMSNorm``, ``rotary_pos_emb``)
for llmkernels' (``layers.py``). Like every ``kernels`` layer, the rotary one replaces the forward of
transformers' one shared ``apply_rotary_pos_emb`` function object of that model family, so it holds
for every model of the family in the process; the RMSNorm forwards are per module. Needs the
``transformers`` extra (``pip install 'llmkernels[transformers]'``: transformers and kernels).
"""

from llmkernels.extras import require

require("transformers", "llmkernels.integrations.hf_kernels", modules=("transformers", "kernels"))

from llmkernels.integrations.hf_kernels import layers  # noqa: E402
from llmkernels.integrations.hf_kernels.marks import MARKED, mark_layers  # noqa: E402
from llmkernels.integrations.hf_kernels.repository import (  # noqa: E402
    DEVICES, LAYERS, default_root, kernel_mapping, local_repository,
)

__all__ = ["DEVICES", "LAYERS", "MARKED", "default_root", "kernel_mapping", "layers", "local_repository",
           "mark_layers"]
