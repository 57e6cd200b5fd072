"""A local ``kernels`` repository that points at the installed llmkernels, and the mapping for it.

``kernels.LocalLayerRepository(path, layer_name=...)`` loads ``<path>/build/<variant>/__init__.py``
(with a ``metadata.json`` beside it) as the kernel module, and takes ``module.layers.<layer_name>``.
The variant a pure-Python kernel uses is a "noarch" one, ``torch-<backend>``, where the backend is
the one torch was built for (``torch-cpu`` on a CPU wheel, ``torch-cuda`` on a CUDA one), whatever
device ``kernelize`` is given. ``local_repository`` writes both variants: each a ``metadata.json``
and a two-line ``__init__.py`` that imports ``llmkernels.integrations.hf_kernels.layers``, so the
layers are the installed package's and nothing is copied or downloaded.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from kernels import LocalLayerRepository

import llmkernels

# transformers' layer name (``@use_kernel_forward_from_hub``) -> the layer class in layers.py.
# SiluAndMul and GeluTanhAndMul are the activation kernels' convention ([gate | up] packed); the
# transformers models of this release mark no such layer, but a model that does gets them.
LAYERS = {
    "RMSNorm": "RMSNorm",
    "rotary_pos_emb": "ApplyRotary",
    "SiluAndMul": "SiluAndMul",
    "GeluTanhAndMul": "GeluTanhAndMul",
}
DEVICES = ("cpu", "cuda")  # where llmkernels' ops run (the backend each op picks: llmkernels.info())

_SHIM = ('"""Written by llmkernels.integrations.hf_kernels: the installed llmkernels\' layers as a kernels repository."""\n'
         "from llmkernels.integrations.hf_kernels import layers  # noqa: F401\n")


def default_root() -> Path:
    """Where ``local_repository`` writes by default: ``$LLMKERNELS_CACHE`` (else ``~/.cache/llmkernels``)."""
    return Path(os.environ.get("LLMKERNELS_CACHE") or Path.home() / ".cache" / "llmkernels")


def _write(path: Path, text: str) -> None:
    """Write unless the file already holds ``text``; atomically, so a concurrent reader (another
    process kernelizing at the same moment) never sees half a file."""
    if path.exists() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        handle.write(text)
    os.replace(handle.name, path)


def local_repository(root: str | os.PathLike | None = None) -> Path:
    """Lay out the repository under ``root`` (default: ``default_root()``) and return its path.
    Idempotent; the directory is named after the llmkernels version, so an upgrade gets a fresh one."""
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path (str or os.PathLike) or None; got {type(root).__name__}")
    repo = Path(default_root() if root is None else root) / f"hf-kernels-{llmkernels.__version__}"
    for backend in DEVICES:
        variant = repo / "build" / f"torch-{backend}"
        metadata = {
            # kernels registers the module in sys.modules under "id": one per variant and version.
            "id": f"llmkernels_hf_layers_{backend}_{llmkernels.__version__}".replace(".", "_").replace("+", "_"),
            "name": "llmkernels", "version": 1, "license": "Apache-2.0", "python-depends": [],
            "backend": {"type": backend},
        }
        _write(variant / "metadata.json", json.dumps(metadata, indent=2) + "\n")
        _write(variant / "__init__.py", _SHIM)
    return repo


def kernel_mapping(root: str | os.PathLike | None = None, devices=DEVICES) -> dict:
    """The mapping for ``kernels.use_kernel_mapping`` (or ``register_kernel_mapping``): each of
    transformers' layer names in ``LAYERS`` to llmkernels' layer, on each of ``devices``, from the
    local repository ``local_repository(root)``. One repository per device (not per mode): every
    layer has a backward and compiles, so kernels uses it in every ``Mode``."""
    devices = (devices,) if isinstance(devices, str) else tuple(devices)
    unknown = [d for d in devices if d not in DEVICES]
    if unknown or not devices:
        raise ValueError(f"devices must be a non-empty subset of {DEVICES}; got {devices!r}")
    repo = local_repository(root)
    return {name: {device: LocalLayerRepository(repo_path=repo, layer_name=layer) for device in devices}
            for name, layer in LAYERS.items()}
