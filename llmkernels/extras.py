"""The optional extras of pyproject.toml, and the one-line error when a command needs one that is
not installed (rather than a ``ModuleNotFoundError`` from deep inside the command)."""

from __future__ import annotations

import importlib.util

# extra: the modules it installs that llmkernels imports (pyproject.toml lists the packages).
EXTRAS = {
    "train": ("numpy", "safetensors", "tokenizers", "tqdm", "matplotlib"),
    "triton": ("triton",),
    "transformers": ("transformers",),
    "translate": ("num2words", "sacrebleu", "numpy", "safetensors", "tokenizers", "tqdm", "matplotlib"),
}


class MissingExtra(ImportError):
    """A command needs an optional dependency that is not installed: one line naming the extra."""


def missing(extra: str, modules: tuple[str, ...] | None = None) -> list[str]:
    """The modules of ``extra`` (or ``modules``, a part of it that one feature needs) that cannot be
    imported here (found without importing them)."""
    absent = []
    for module in modules or EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken install, or a module blocked in sys.modules
            found = False
        if not found:
            absent.append(module)
    return absent


def require(extra: str, what: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise ``MissingExtra`` unless every module of ``extra`` (or ``modules``) is importable."""
    absent = missing(extra, modules)
    if absent:
        raise MissingExtra(
            f"{what} needs {', '.join(absent)}, which {'is' if len(absent) == 1 else 'are'} not installed: "
            f"pip install 'llmkernels[{extra}]'"
        )
