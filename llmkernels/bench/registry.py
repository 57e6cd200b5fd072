"""Every op family's cases, registered by importing their modules (the one place that lists them)."""

from llmkernels.bench import cases_attention, cases_distillation, cases_linear, cases_losses, cases_pointwise  # noqa: F401
from llmkernels.bench.case import BUILDERS, OPS, Case, Spec  # noqa: F401


def op_names() -> list[str]:
    return list(OPS)


def specs(op: str, level: str, device: str) -> list[Spec]:
    if op not in OPS:
        raise ValueError(f"op must be one of {', '.join(OPS)}; got {op!r}")
    return OPS[op](level, device)
