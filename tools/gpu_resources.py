"""Resource rules and the table of tools/triton_check.py: ptxas reports parsed, limits applied,
the launchers' choices checked, benchmarks/results/gpu_resources.md written, a summary printed.

Plain Python (no Triton, no torch) so that tests can exercise the rules on made-up results.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from collections import defaultdict

# Shared memory one block may use (the opt-in maximum): A100 163 KB, H100/H200 227 KB.
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}
REGISTERS_PER_SM = 65536
ARCH_NAMES = {80: "sm_80", 90: "sm_90a"}


@dataclasses.dataclass
class Resources:
    """What one kernel compiled to (or why it did not)."""

    ok: bool
    error: str = ""
    registers: int = -1
    spill_stores: int = 0
    spill_loads: int = 0
    stack: int = 0
    shared: int = 0  # bytes per block, static plus dynamic where known
    threads: int = 0
    seconds: float = 0.0

    @property
    def spills(self) -> bool:
        return self.spill_stores > 0 or self.spill_loads > 0


@dataclasses.dataclass
class Row:
    """One configuration on one target: what it is, where it runs, what it needs."""

    family: str  # "triton" or "cuda"
    kernel: str
    dtype: str
    config: str
    switches: str
    arch: int
    res: Resources
    choice: str = ""
    hot: bool = False


_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\w+)'")
_PROPS = re.compile(r"Function properties for (\S+)")
_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


def parse_ptxas(log: str) -> dict[tuple[str, str], dict]:
    """{(function, arch): {registers, spill_stores, spill_loads, stack, smem}} from `ptxas -v`
    output (Triton's or nvcc -Xptxas -v's)."""
    out: dict[tuple[str, str], dict] = {}
    entry = None
    arch = ""
    props_for = None
    for line in log.splitlines():
        m = _ENTRY.search(line)
        if m:
            entry, arch = m.group(1), m.group(2)
            out[(entry, arch)] = dict(registers=-1, spill_stores=0, spill_loads=0, stack=0, smem=0)
            continue
        m = _PROPS.search(line)
        if m:
            props_for = m.group(1)
            continue
        m = _SPILL.search(line)
        if m and props_for is not None:
            if (props_for, arch) in out:
                out[(props_for, arch)].update(
                    stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
            props_for = None
            continue
        m = _USED.search(line)
        if m and entry is not None:
            rec = out[(entry, arch)]
            rec["registers"] = int(m.group(1))
            s = _SMEM.search(line)
            rec["smem"] = int(s.group(1)) if s else 0
    return out


def demangle(names: list[str]) -> dict[str, str]:
    tool = shutil.which("cu++filt") or shutil.which("c++filt")
    if not tool or not names:
        return {n: n for n in names}
    try:
        done = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True, timeout=30)
        pretty = done.stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return {n: n for n in names}
    return dict(zip(names, pretty)) if len(pretty) == len(names) else {n: n for n in names}


def short_cuda_name(pretty: str) -> str:
    name = re.sub(r"^void ", "", pretty)
    name = re.sub(r"\((?:[^()]|\([^()]*\))*\)$", "", name)  # the parameter list
    for prefix in ("llmkernels::", "attn_cuda::", "(anonymous namespace)::", "cuda_common::"):
        name = name.replace(prefix, "")
    return name.replace("__nv_bfloat16", "bf16").replace("__half", "fp16").replace("float", "fp32")


def parse_dynamic_smem(text: str) -> dict[tuple[str, str], int]:
    """{(kernel, template arguments): bytes} from tools/cuda_smem_sizes.cu's lines
    "<kernel> <template arguments> <bytes>" (the dynamic shared memory a launcher asks for)."""
    sizes = {}
    for line in text.splitlines():
        head, _, nbytes = line.strip().rpartition(" ")
        kernel, _, targs = head.partition(" ")
        if kernel and nbytes.isdigit():
            sizes[(kernel, targs)] = int(nbytes)
    return sizes


def cuda_rows(source: str, log: str, dynamic: dict[tuple[str, str], int] | None = None) -> list[Row]:
    """Rows for every kernel nvcc -Xptxas -v compiled from one .cu file; ``dynamic`` adds each
    kernel's dynamic shared memory (parse_dynamic_smem) to ptxas's static figure."""
    dynamic = dynamic or {}
    found = parse_ptxas(log)
    pretty = demangle(sorted({name for name, _ in found}))
    rows = []
    for (name, arch_name), rec in sorted(found.items()):
        arch = 90 if arch_name.startswith("sm_90") else int(arch_name[3:].rstrip("a"))
        res = Resources(ok=True, registers=rec["registers"], spill_stores=rec["spill_stores"],
                        spill_loads=rec["spill_loads"], stack=rec["stack"], shared=rec["smem"])
        short = short_cuda_name(pretty.get(name, name))
        kernel, _, targs = short.partition("<")
        targs = targs.rstrip(">") or "-"
        extra = dynamic.get((kernel, targs))
        if extra is not None:
            res.shared += extra
        smem = "static smem" if extra is None else "static + dynamic smem"
        rows.append(Row("cuda", f"{source}: {kernel}", targs, smem, "-", arch, res))
    return rows


def evaluate(rows: list[Row]) -> tuple[list[str], list[str]]:
    """(failures, warnings). Fails: a config that does not compile, needs more shared memory per
    block than the card has, or more registers than an SM holds for one block; a launcher choice
    among candidates where some spill and some do not. Warns: every spill (hot ones marked)."""
    failures, warnings = [], []
    for r in rows:
        where = f"{ARCH_NAMES.get(r.arch, r.arch)} {r.kernel} {r.dtype} {r.config} [{r.switches}]"
        if not r.res.ok:
            failures.append(f"does not compile: {where}: {r.res.error}")
            continue
        limit = SHARED_LIMIT.get(r.arch)
        if limit is not None and r.res.shared > limit:
            failures.append(f"shared memory {r.res.shared / 1024:.1f} KB > {limit // 1024} KB per block: {where}")
        if r.res.registers > 0 and r.res.threads and r.res.registers * r.res.threads > REGISTERS_PER_SM:
            failures.append(f"{r.res.registers} registers x {r.res.threads} threads > {REGISTERS_PER_SM}: {where}")
        if r.res.spills:
            tag = "HOT PATH spills (expected none)" if r.hot else "spills"
            warnings.append(f"{tag} {r.res.spill_stores}/{r.res.spill_loads} B st/ld: {where}")
    groups: dict[tuple[int, str], list[Row]] = defaultdict(list)
    for r in rows:
        if r.choice and r.res.ok:
            groups[(r.arch, r.choice)].append(r)
    for (arch, choice), cands in sorted(groups.items()):
        spilling = [c.config for c in cands if c.res.spills]
        clean = [c.config for c in cands if not c.res.spills]
        if spilling and clean:
            failures.append(
                f"launcher may pick a spilling tile: {ARCH_NAMES.get(arch, arch)} {choice}: "
                f"{', '.join(spilling)} spill, {', '.join(clean)} do not")
    return failures, warnings


def choices_checked(rows: list[Row]) -> int:
    return len({(r.arch, r.choice) for r in rows if r.choice})


def _kb(n: int) -> str:
    return f"{n / 1024:.1f}"


def _cells(res: Resources | None) -> list[str]:
    if res is None:
        return ["", "", ""]
    if not res.ok:
        return ["FAIL", "", ""]
    spill = f"{res.spill_stores}/{res.spill_loads}" if res.spills else "0"
    return [str(res.registers), spill, _kb(res.shared)]


def table(rows: list[Row], archs: list[int], header: str) -> str:
    """Markdown: one line per configuration, the targets side by side."""
    merged: dict[tuple, dict[int, Resources]] = {}
    meta: dict[tuple, Row] = {}
    for r in rows:
        key = (r.family, r.kernel, r.dtype, r.config, r.switches)
        merged.setdefault(key, {})[r.arch] = r.res
        meta.setdefault(key, r)
    cols = ["kernel", "dtype", "config", "switches"]
    for a in archs:
        name = ARCH_NAMES.get(a, str(a))
        cols += [f"{name} regs", f"{name} spill st/ld B", f"{name} smem KB"]
    lines = [header, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for key in merged:  # the order of the cases: the launchers' tables
        r = meta[key]
        name = r.kernel + (" (hot)" if r.hot else "")
        cells = [name, r.dtype, r.config, r.switches]
        for a in archs:
            cells += _cells(merged[key].get(a))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary(rows: list[Row], archs: list[int]) -> list[str]:
    """Per family and target: configurations, failures, spills, the largest shared memory and
    register counts (with the configuration that needs them)."""
    out = []
    for family in ("triton", "cuda"):
        for a in archs:
            mine = [r for r in rows if r.family == family and r.arch == a]
            if not mine:
                continue
            good = [r for r in mine if r.res.ok]
            spill = [r for r in good if r.res.spills]
            hot = [r for r in spill if r.hot]
            line = (f"{family} {ARCH_NAMES.get(a, a)}: {len(mine)} configs, {len(mine) - len(good)} failed, "
                    f"{len(spill)} spill ({len(hot)} hot)")
            if good:
                top = max(good, key=lambda r: r.res.shared)
                regs = max(good, key=lambda r: r.res.registers)
                limit = SHARED_LIMIT.get(a, 0) // 1024
                line += (f"; max smem {_kb(top.res.shared)} KB of {limit} ({top.kernel} {top.dtype} {top.config})"
                         f"; max regs {regs.res.registers} ({regs.kernel} {regs.dtype} {regs.config})")
            out.append(line)
    return out
