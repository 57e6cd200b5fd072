#!/usr/bin/env python
"""Compile every Triton kernel of the package for sm_80 and sm_90 without a GPU, and check what
it needs: the Triton half of `make cuda-check` (tools/cuda_check.sh runs it last).

The cases come from each family's ``triton_cases`` module (the registry is
``llmkernels.ops.common.triton_cases.FAMILIES``), built from the tables the launchers use. Each
case is compiled ahead of time (``triton.compile(ASTSource(...), target=GPUTarget(...))``,
ptxas included) in a process pool; ptxas's report gives registers and spills, Triton's metadata
the shared memory. Results are cached by the kernel's source hash (Triton's ``cache_key``, which
covers the @triton.jit functions it calls), the case, the Triton version and ptxas's.

Fails (exit 1) when a configuration does not compile, needs more shared memory than the card
(sm_80: 163 KB, sm_90: 227 KB per block), or a launcher may autotune onto a spilling tile while
a spill-free candidate exists; lists spills as warnings. With ``--cuda-log SRC=LOG`` (nvcc
-Xptxas -v output) the CUDA kernels join the table. Writes benchmarks/results/gpu_resources.md
(on a full run, or to --table) and prints its summary last. Exit 0 with "skipped" and the
reason where Triton or its CUDA backend is absent.
"""

from __future__ import annotations

import os

# The check compiles for real targets: Triton's CPU interpreter (the tests' TRITON_INTERPRET=1)
# would replace every @triton.jit function by an interpreted one. Set before anything imports triton.
os.environ["TRITON_INTERPRET"] = "0"
os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"  # Triton prints ptxas -v's report: registers, spills
os.environ["TRITON_ALWAYS_COMPILE"] = "1"  # never answer from Triton's own cache (it has no report)

import argparse  # noqa: E402
import concurrent.futures  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import hashlib  # noqa: E402
import importlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import pathlib  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

# Triton 3.9 warns that its fp-fusion default will change; the check compiles what a launch
# compiles, with the installed Triton's default.
warnings.filterwarnings("ignore", message="TRITON_DEFAULT_FP_FUSION")

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT))  # llmkernels from this tree

import gpu_resources as gr  # noqa: E402

TARGETS = (80, 90)
TABLE = ROOT / "benchmarks" / "results" / "gpu_resources.md"
CACHE_VERSION = 1  # bump when what a cache entry holds changes


def skip_reason() -> str | None:
    try:
        import triton
        from triton.backends.compiler import GPUTarget  # noqa: F401
        from triton.compiler import ASTSource  # noqa: F401
    except ImportError as e:
        return f"triton is not importable ({e})"
    if tuple(int(x) for x in triton.__version__.split(".")[:2]) < (3, 4):
        return f"triton {triton.__version__} is older than 3.4 (no ptxas report to read)"
    try:
        ptxas = _ptxas(80)
    except Exception as e:  # noqa: BLE001 - any failure here means no CUDA backend to compile with
        return f"triton's CUDA backend is unavailable ({type(e).__name__}: {e})"
    if not ptxas or not os.path.exists(ptxas):
        return "triton's ptxas was not found"
    return None


def _ptxas(arch: int) -> str:
    from triton.backends.nvidia.compiler import get_ptxas

    return get_ptxas(arch).path


def family_module(name: str) -> str:
    return name if "." in name else f"llmkernels.ops.{name}.triton_cases"


@dataclasses.dataclass
class Job:
    key: str
    module: str
    kernel: str
    signature: dict
    constexprs: dict
    aligned: list
    num_warps: int
    num_stages: int
    arch: int


def describe(case) -> tuple[str, str]:
    """(kernel label, configuration) for tables: the block sizes and precision, warps, stages."""
    label = case.kernel
    parts = [f"{k.removeprefix('BLOCK_')}={v}" for k, v in case.constexprs if not isinstance(v, bool)]
    return label, " ".join(parts + [f"w{case.num_warps}", f"s{case.num_stages}"])


def collect(families: list[str], archs: list[int], pattern: str | None):
    """[(case, arch, Job)] over the families' cases, and the ptxas versions used in the keys."""
    import re

    import triton
    from triton.backends.nvidia.compiler import get_ptxas_version

    versions = {arch: str(get_ptxas_version(arch)) for arch in archs}
    out = []
    for family in families:
        cases_module = importlib.import_module(family_module(family))
        for arch in archs:
            for case in cases_module.cases(arch):
                fn = getattr(importlib.import_module(case.module), case.kernel)
                names = list(fn.arg_names)
                label, config = describe(case)
                if pattern and not re.search(pattern, f"{family} {label} {case.dtype} {config} {case.switches()}"):
                    continue
                sig = case.signature(names)
                consts = dict(case.constexprs)
                aligned = case.aligned(names)
                ident = json.dumps([CACHE_VERSION, triton.__version__, versions[arch], fn.cache_key, sig,
                                    sorted(consts.items()), aligned, case.num_warps, case.num_stages, arch],
                                   sort_keys=True, default=str)
                key = hashlib.sha256(ident.encode()).hexdigest()
                job = Job(key, case.module, case.kernel, sig, consts, aligned, case.num_warps, case.num_stages, arch)
                out.append((family, case, arch, job))
    return out


def _compile(job: Job) -> dict:
    """In a worker: compile one case, return its resources (as a dict, for the cache)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = getattr(importlib.import_module(job.module), job.kernel)
    attrs = {(i,): [["tt.divisibility", 16]] for i in job.aligned}
    start = time.perf_counter()
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            kernel = triton.compile(
                ASTSource(fn, job.signature, job.constexprs, attrs),
                target=GPUTarget("cuda", job.arch, 32),
                options={"num_warps": job.num_warps, "num_stages": job.num_stages},
            )
    except Exception as e:  # noqa: BLE001 - every compile failure is a finding to report
        text = str(e).strip().splitlines()
        error = f"{type(e).__name__}: " + (" / ".join(text[:3]) if text else "")
        return dataclasses.asdict(gr.Resources(ok=False, error=error[:400], seconds=time.perf_counter() - start))
    report = gr.parse_ptxas(captured.getvalue())
    if not report:  # no report printed (another Triton version): run ptxas -v on the PTX ourselves
        report = _ptxas_report(kernel.asm["ptx"], job.arch)
    name = kernel.metadata.name
    rec = next((v for (fname, _), v in report.items() if fname == name), None) or {}
    return dataclasses.asdict(gr.Resources(
        ok=True, registers=rec.get("registers", -1), spill_stores=rec.get("spill_stores", 0),
        spill_loads=rec.get("spill_loads", 0), stack=rec.get("stack", 0),
        shared=int(kernel.metadata.shared) + rec.get("smem", 0),
        threads=32 * int(kernel.metadata.num_warps) * int(getattr(kernel.metadata, "num_ctas", 1) or 1),
        seconds=time.perf_counter() - start,
    ))


def _ptxas_report(ptx: str, arch: int) -> dict:
    gpu = "sm_90a" if arch == 90 else f"sm_{arch}"
    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(tmp) / "k.ptx"
        src.write_text(ptx)
        done = subprocess.run([_ptxas(arch), "-v", f"--gpu-name={gpu}", str(src), "-o", str(src) + ".o"],
                              capture_output=True, text=True)
    return gr.parse_ptxas(done.stdout + done.stderr)


def cache_dir(args) -> pathlib.Path | None:
    if args.no_cache:
        return None
    base = os.environ.get("LLMKERNELS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "llmkernels")
    path = pathlib.Path(base) / "triton-check"
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_jobs(jobs: list[Job], workers: int, cache: pathlib.Path | None) -> tuple[dict, int]:
    """{key: Resources} for every job, from the cache or compiled in a pool; and the cache hits."""
    results: dict[str, gr.Resources] = {}
    todo: dict[str, Job] = {}
    for job in jobs:
        if job.key in results or job.key in todo:
            continue
        hit = cache / f"{job.key}.json" if cache else None
        if hit is not None and hit.exists():
            try:
                results[job.key] = gr.Resources(**json.loads(hit.read_text()))
                continue
            except (ValueError, TypeError):
                pass
        todo[job.key] = job
    hits = len(results)
    for res in results.values():
        res.seconds = 0.0  # compile times are this run's only
    if not todo:
        return results, hits
    # Largest kernels first, so that the pool does not end on one long compile.
    order = sorted(todo.values(), key=lambda j: (not j.kernel.startswith("_attn"), -j.num_warps * j.num_stages))
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    done = 0
    step = max(1, len(order) // 10)
    with tempfile.TemporaryDirectory(prefix="triton-check-") as tmp:
        os.environ["TRITON_CACHE_DIR"] = tmp
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(_compile, job): job for job in order}
            for fut in concurrent.futures.as_completed(futures):
                job = futures[fut]
                try:
                    res = gr.Resources(**fut.result())
                except Exception as e:  # noqa: BLE001 - a crashed worker is a failed compile
                    res = gr.Resources(ok=False, error=f"worker failed: {type(e).__name__}: {e}")
                results[job.key] = res
                if cache is not None and res.ok:
                    (cache / f"{job.key}.json").write_text(json.dumps(dataclasses.asdict(res)))
                done += 1
                if done % step == 0 or done == len(order):
                    print(f"triton-check: compiled {done}/{len(order)}", flush=True)
    return results, hits


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", help="comma-separated families or case modules (default: the registry)")
    parser.add_argument("--archs", default=",".join(map(str, TARGETS)), help="compute capabilities, e.g. 80,90")
    parser.add_argument("--filter", help="regex on 'family kernel dtype config switches'")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--list", action="store_true", help="count and list the cases, compile nothing")
    parser.add_argument("--table", help=f"where to write the table (default {TABLE.relative_to(ROOT)} on a full run)")
    parser.add_argument("--cuda-log", action="append", default=[], metavar="SRC=LOG",
                        help="nvcc -Xptxas -v output of one .cu file")
    parser.add_argument("--cuda-dynamic-smem", metavar="FILE",
                        help="tools/cuda_smem_sizes.cu's output: dynamic shared memory per CUDA kernel")
    args = parser.parse_args(argv)

    reason = skip_reason()
    if reason:
        print(f"triton-check: skipped: {reason}")
        return 0
    from llmkernels.ops.common.triton_cases import FAMILIES

    families = args.families.split(",") if args.families else list(FAMILIES)
    archs = [int(a) for a in args.archs.split(",")]
    start = time.perf_counter()
    entries = collect(families, archs, args.filter)
    jobs = [job for *_, job in entries]
    unique = len({job.key for job in jobs})
    per_arch = {a: sum(1 for *_, arch, _ in entries if arch == a) for a in archs}
    counts = ", ".join(f"{gr.ARCH_NAMES.get(a, a)} {n}" for a, n in per_arch.items())
    print(f"triton-check: {len(entries)} configurations ({counts}), {unique} distinct kernels")
    if args.list:
        for family, case, arch, _ in entries:
            label, config = describe(case)
            print(f"  sm_{arch} {family} {label} {case.dtype} {config} [{case.switches()}]")
        return 0

    results, hits = run_jobs(jobs, max(1, args.jobs), cache_dir(args))
    elapsed = time.perf_counter() - start
    rows = []
    for family, case, arch, job in entries:
        label, config = describe(case)
        rows.append(gr.Row("triton", f"{family}/{label}", case.dtype, config, case.switches(), arch,
                           results[job.key], case.choice, case.hot))
    dynamic = gr.parse_dynamic_smem(pathlib.Path(args.cuda_dynamic_smem).read_text()) if args.cuda_dynamic_smem else {}
    for spec in args.cuda_log:
        source, _, log = spec.partition("=")
        rows.extend(gr.cuda_rows(source, pathlib.Path(log).read_text(errors="replace"), dynamic))

    failures, warns = gr.evaluate(rows)
    full = not args.families and not args.filter
    table_path = pathlib.Path(args.table) if args.table else (TABLE if full else None)
    if table_path is not None:
        header = ("# GPU resources per kernel configuration\n\nWritten by `make cuda-check` "
                  "(tools/triton_check.py, tools/cuda_check.sh): registers per thread, spill stores/loads "
                  "(bytes), shared memory per block (KB; static + dynamic: Triton's from its compiler, CUDA's static from ptxas plus, for the "
                  "attention kernels, the dynamic tiles their launchers ask for, printed by tools/cuda_smem_sizes.cu). Limits: sm_80 163 KB, sm_90 227 KB per block. (hot) marks the paths "
                  "expected to be spill-free; `switches` lists the boolean constexprs that are on.\n\n## Summary\n\n"
                  + "\n".join(f"- {line}" for line in gr.summary(rows, archs))
                  + "\n" + "".join(f"- WARNING {w}\n" for w in warns)
                  + "".join(f"- FAIL {f}\n" for f in failures))
        table_path.parent.mkdir(parents=True, exist_ok=True)
        table_path.write_text(gr.table(rows, archs, header))

    print(f"triton-check: {unique - hits} compiled, {hits} from cache, {elapsed:.0f} s "
          f"({max(1, args.jobs)} workers); {gr.choices_checked(rows)} launcher choices checked")
    compiled = [r for r in results.values() if r.seconds > 0]
    if compiled:
        slow = max(compiled, key=lambda r: r.seconds)
        print(f"triton-check: {sum(r.seconds for r in compiled) / len(compiled):.2f} s per compile "
              f"(slowest {slow.seconds:.1f} s)")
    for w in warns:
        print(f"triton-check: WARNING {w}")
    for f in failures:
        print(f"triton-check: FAIL {f}")
    print("== GPU resource summary" + (f" ({table_path})" if table_path else "") + " ==")
    for line in gr.summary(rows, archs):
        print(f"  {line}")
    print(f"  {len(failures)} failures, {len(warns)} warnings")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
