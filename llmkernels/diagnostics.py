"""``llmkernels.info()``: what was built, for which CPU features and CUDA archs, and which
backend each op would use on each device, and why."""

from __future__ import annotations

import torch

from llmkernels import _native, _triton, backends, bf16_support
from llmkernels.ops.common import cpu_gemm


def info(print_report: bool = True) -> dict:
    """Describe the build and backend choices; prints a report unless ``print_report=False``.

    For each op, device and dtype: the backend ``auto`` would pick (``"auto"``), what the backend
    requested now (``use_backend`` block, else ``LLMKERNELS_BACKEND``) would run (``"runs"``) or
    the error it would raise (``"error"``), and every backend's status (``"backends"``).
    """
    import llmkernels

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    requested = backends.requested_backend()
    report = {
        "version": llmkernels.__version__,
        "torch": torch.__version__,
        "extension": _native.build_info(),
        "triton": _triton.probe("cuda" if torch.cuda.is_available() else "cpu")[1],
        "cpu_bf16_matmul_native": bf16_support.cpu_bf16_matmul_is_native(),
        "cpu_gemm_own": cpu_gemm.available(),
        "requested_backend": requested,
        "requested_from": backends.requested_origin(),
        "ops": {},
    }
    for op in backends.registered_ops():
        report["ops"][op] = {}
        for device in devices:
            per_dtype = {}
            for dtype in (torch.float32, torch.bfloat16):
                chosen, statuses = backends.explain(op, device, dtype)
                runs, error = backends.would_run(op, device, dtype, requested)
                per_dtype[str(dtype).replace("torch.", "")] = {
                    "auto": chosen, "runs": runs, "error": error, "backends": statuses,
                }
            report["ops"][op][device] = per_dtype
    if print_report:
        print(format_report(report))
    return report


def _shared_statuses(report: dict, device: str, dtype: str) -> dict[str, str]:
    """Per backend, the status that every op implementing it has on ``device`` and ``dtype``: said
    once (an op that lacks the backend says "not implemented" on its own line instead)."""
    rows = [per_device[device][dtype]["backends"] for per_device in report["ops"].values()]
    shared = {}
    for backend in rows[0] if rows else ():
        statuses = {row.get(backend) for row in rows} - {backends.NOT_IMPLEMENTED}
        if len(statuses) == 1:
            shared[backend] = statuses.pop()
    return shared


def _requested_line(report: dict) -> str:
    requested, origin = report["requested_backend"], report["requested_from"]
    line = f"requested backend: {requested}" + ("" if origin == "default" else f" (from {origin})")
    choices = [c for devices in report["ops"].values() for dtypes in devices.values() for c in dtypes.values()]
    failing = sum(c["error"] is not None for c in choices)
    if failing == len(choices) and choices:
        line += "; every op would raise (why below)"
    elif failing:
        line += f"; {failing} of {len(choices)} op/device/dtype combinations would raise (below)"
    return line


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
    lines.append("PyTorch's bf16 matrix multiply on this CPU: " + (
        "native (oneDNN)" if report["cpu_bf16_matmul_native"]
        else "a scalar fallback, tens of times slower than float32: train in float32 here"))
    lines.append("float32 GEMMs of linear and the fused linear losses on this CPU (cpp backend): " + (
        "llmkernels' own (AVX2)" if report["cpu_gemm_own"] else "torch's"))
    lines.append(_requested_line(report))
    requested = report["requested_backend"]
    cases = {(device, dtype) for per_op in report["ops"].values() for device, dtypes in per_op.items() for dtype in dtypes}
    for device, dtype in sorted(cases, key=lambda case: (case[0], case[1] != "float32", case[1])):
        shared = _shared_statuses(report, device, dtype)
        said = "; ".join(f"{b}: {'see triton above' if s == report['triton'] else s}" for b, s in shared.items())
        lines.append(f"on {device}, {dtype}, every op: {said}")
        for op, per_device in report["ops"].items():
            choice = per_device[device][dtype]
            rest = "; ".join(f"{b}: {s}" for b, s in choice["backends"].items() if shared.get(b) != s)
            why = f"   ({rest})" if rest else ""
            if choice["error"] is not None:
                lines.append(f"  {op} [{device}, {dtype}] {requested} -> would raise: {choice['error']}")
            else:
                lines.append(f"  {op} [{device}, {dtype}] {requested} -> {choice['runs']}{why}")
    return "\n".join(lines)
