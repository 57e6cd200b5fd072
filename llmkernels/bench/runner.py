"""``llmkernels bench``: the day's ceilings, then every case of the chosen ops, each as a block of
the terminal table as it finishes (a progress bar on stderr), the rows appended to
benchmarks/results/<device>.csv and the plots redrawn from the whole CSV.

Levels: the default runs the shapes BENCHMARKS.md quotes in 5 rounds (15 for decoding); ``quick``
the same shapes in 3 rounds; ``sweep`` the sizes (seq 512..16k for attention, vocab 8k..128k for
the losses). LLMKERNELS_BENCH_TINY=1 shrinks every problem to a toy (a smoke test of the harness:
its figures mean nothing, so its rows go to results/tiny/, which neither --markdown nor the real
plots read).
"""

from __future__ import annotations

import glob
import os
import sys
import time

from llmkernels.bench import ceilings as ceiling_probe
from llmkernels.bench import markdown, plots, registry, results
from llmkernels.bench.measure import measure_case


class BenchError(ValueError):
    """A bad `llmkernels bench` argument: one line, naming it."""


def tiny() -> bool:
    return os.environ.get("LLMKERNELS_BENCH_TINY") == "1"


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Progress:
    """A one-line bar on stderr when it is a terminal; plain "[i/n] case" lines otherwise."""

    def __init__(self, total: int, stream=None):
        self.total, self.done, self.stream = total, 0, stream or sys.stderr
        self.start = time.perf_counter()
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()

    def show(self, label: str) -> None:
        elapsed = time.perf_counter() - self.start
        if self.live:
            width = 24
            filled = width * self.done // max(self.total, 1)
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {elapsed:5.0f}s {label[:60]:<60}")
        else:
            self.stream.write(f"[{self.done + 1}/{self.total}] {label}\n")
        self.stream.flush()

    def step(self) -> None:
        self.done += 1

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()


def plan(ops: list[str] | None, level: str, device: str) -> list:
    names = ops or registry.op_names()
    for name in names:
        if name not in registry.OPS:
            raise BenchError(f"--op must be one of {', '.join(registry.op_names())}; got {name!r}")
    specs = [spec for name in names for spec in registry.specs(name, level, device)]
    return [spec.tiny() for spec in specs] if tiny() else specs


def run(ops: list[str] | None = None, level: str = "full", device: str | None = None, out=None) -> dict:
    """Measure, print, append, plot. Returns the rows, the CSV path and the plot paths."""
    out = out or sys.stdout
    device = device or default_device()
    specs = plan(ops, level, device)
    rounds = 3 if level == "quick" else None
    label = results.device_name(device)
    # Rows are appended case by case, so a run cut short (a time limit) keeps what it measured.
    path, run_context = csv_path(label), results.context(label)
    print(f"llmkernels bench: {len(specs)} cases on {label}, {level}{' (tiny problems)' if tiny() else ''}", file=out)
    progress = Progress(len(specs) + 1)
    progress.show("ceilings: copy bandwidth, GEMM rates")
    ceilings = ceiling_probe.measure(device, rounds=3 if level == "quick" or tiny() else 7, tiny=tiny())
    progress.step()
    rows = results.stamp(ceilings.rows(), label, run_context)
    results.append(path, rows)
    print(markdown.ceilings_line(rows), file=out)
    failed = []
    for spec in specs:
        progress.show(spec.id)
        try:
            case = spec.build(device)
            measured = measure_case(case, spec, device, ceilings, rounds=1 if tiny() else rounds, warmup=1)
            new = results.stamp(measured.rows, label, run_context)
            results.append(path, new)
            rows += new
            lines = measured.lines
            del case, measured  # one case's tensors alive at a time
        except Exception as e:  # noqa: BLE001 - one broken case is reported; the others still run
            failed.append(spec.id)
            case = measured = None
            lines = [f"  {spec.id}: FAILED: {type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"]
        progress.step()
        if progress.live:
            progress.stream.write("\r")
        print("\n".join(lines), file=out, flush=True)
    progress.close()
    # The summary tables last (on a GPU also every contender's rate, the figure a datasheet is read against).
    for table in (markdown.speedup_table(rows), markdown.rate_table(rows) if device.startswith("cuda") else []):
        if table:
            print("\n" + "\n".join(table), file=out)
    written = redraw(path)
    print(f"\nappended {len(rows)} rows to {path}" + (f"; plots: {', '.join(written)}" if written else ""), file=out)
    if failed:
        print(f"{len(failed)} case(s) failed: {'; '.join(failed)}", file=out)
    return {"rows": rows, "csv": path, "plots": written, "failed": failed}


def csv_path(label: str) -> str:
    """benchmarks/results/<device>.csv; a tiny run's under results/tiny/ (its figures are not figures)."""
    path = results.csv_path(label)
    return os.path.join(os.path.dirname(path), "tiny", os.path.basename(path)) if tiny() else path


def redraw(path: str) -> list[str]:
    """The plots of one device, from its whole CSV (none without matplotlib: a note, not a failure)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("(plots skipped: matplotlib is not installed)", file=sys.stderr)
        return []
    return plots.draw(results.read(path), os.path.dirname(path))


def render_markdown() -> str:
    """BENCHMARKS.md-style tables from every results CSV here."""
    paths = sorted(glob.glob(os.path.join(results.results_dir(), "*.csv")))
    if not paths:
        raise BenchError(f"no results in {results.results_dir()}: run `llmkernels bench` first")
    root = results.REPO_ROOT
    return markdown.render({os.path.relpath(p, root) if p.startswith(root) else p: results.read(p) for p in paths})


def add_arguments(p) -> None:
    p.add_argument("--op", action="append", default=None, metavar="NAME",
                   help=f"only this op family, repeatable (default: all): one of {', '.join(registry.op_names())}")
    level = p.add_mutually_exclusive_group()
    level.add_argument("--quick", action="store_true", help="the same shapes in 3 rounds instead of 5 (default: off)")
    level.add_argument("--sweep", action="store_true",
                       help="sizes instead of the quoted shapes: seq 512..16k for attention, vocab 8k..128k for the "
                            "losses (default: off)")
    level.add_argument("--markdown", action="store_true",
                       help="run nothing: print BENCHMARKS.md-style tables from every benchmarks/results/*.csv "
                            "(default: off)")
    p.add_argument("--device", default=None, choices=("cpu", "cuda"), help="default: cuda when present, else cpu")


def main(args) -> int:
    """`llmkernels bench`: a bad argument is one line on stderr and exit status 2."""
    try:
        if args.markdown:
            print(render_markdown())
            return 0
        if args.device == "cuda" and default_device() != "cuda":
            raise BenchError("--device cuda: no CUDA device here")
        done = run(args.op, "quick" if args.quick else "sweep" if args.sweep else "full", args.device)
    except BenchError as e:
        print(f"llmkernels bench: error: {e}", file=sys.stderr)
        return 2
    return 1 if done["failed"] else 0
