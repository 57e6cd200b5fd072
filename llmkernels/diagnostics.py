"""``llmkernels.info()``: what was built, for which CPU features and CUDA archs, and which
backend each op would use on each device, and why."""

from __future__ import annotations

import torch

from llmkernels import _native, _triton, backends


def info(print_report: bool = True) -> dict:
    """Describe the build and backend choices; prints a report unless ``print_report=False``."""
    import llmkernels

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    report = {
        "version": llmkernels.__version__,
        "torch": torch.__version__,
        "extension": _native.build_info(),
        "triton": _triton.probe("cuda" if torch.cuda.is_available() else "cpu")[1],
        "requested_backend": backends.requested_backend(),
        "ops": {},
    }
    for op in backends.registered_ops():
        report["ops"][op] = {}
        for device in devices:
            per_dtype = {}
            for dtype in (torch.float32, torch.bfloat16):
                chosen, statuses = backends.explain(op, device, dtype)
                per_dtype[str(dtype).replace("torch.", "")] = {"auto": chosen, "backends": statuses}
            report["ops"][op][device] = per_dtype
    if print_report:
        print(format_report(report))
    return report


def format_report(report: dict) -> str:
    lines = [f"llmkernels {report['version']} on torch {report['torch']}"]
    ext = report["extension"]
    if ext.get("built"):
        lines.append(
            f"extension: built with {ext.get('compiler')}, OpenMP {ext.get('openmp')}, CPU ISA variants "
            f"{', '.join(ext.get('cpu_isa_variants', []))} (running {ext.get('cpu_isa')}), "
            f"CUDA {'archs ' + ext.get('cuda_archs', '') if ext.get('cuda') else 'not built'}"
        )
    else:
        lines.append(f"extension: not built ({ext.get('reason')}); ops run on 'reference'")
    lines.append(f"triton: {report['triton']}")
    lines.append(f"requested backend: {report['requested_backend']}")
    for op, devices in report["ops"].items():
        for device, dtypes in devices.items():
            for dtype, choice in dtypes.items():
                why = "; ".join(f"{b}: {s}" for b, s in choice["backends"].items())
                lines.append(f"  {op} [{device}, {dtype}] auto -> {choice['auto']}   ({why})")
    return "\n".join(lines)
