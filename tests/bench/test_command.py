"""`llmkernels bench` end to end on a toy problem, every registered case at toy size, and the GPU
check's refusal on a machine without a GPU."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import time

import pytest
import torch

from llmkernels import cli
from llmkernels.bench import registry, results

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny_results(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMKERNELS_BENCH_TINY", "1")
    monkeypatch.setenv("LLMKERNELS_BENCH_RESULTS", str(tmp_path))
    return tmp_path


@pytest.mark.timeout(300)
def test_quick_run_of_one_op_finishes_and_appends_rows(tiny_results, capsys):
    for _ in range(2):
        assert cli.main(["bench", "--op", "sinusoidal", "--quick", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "sinusoidal fwd+bwd" in out and "speed-up vs eager x*scale + table" in out
    (path,) = (tiny_results / "tiny").glob("*.csv")  # a toy run never lands beside real figures
    rows = results.read(str(path))
    runs = sorted({r.date for r in rows})
    assert len(runs) == 2 and path.read_text().count("op,provider,mode") == 1
    last = [r for r in rows if r.date == runs[-1]]
    seconds = {r.provider for r in last if r.op == "sinusoidal" and r.metric == "seconds"}
    assert seconds == {"eager x*scale + table", "llmkernels[cpp]"} or seconds == {"eager x*scale + table", "llmkernels[reference]"}
    assert all(r.median > 0 and r.p20 <= r.median <= r.p80 for r in last if r.metric == "seconds")
    assert {r.provider for r in last if r.op == "ceiling"} == {"copy (warm)", "GEMM fp32", "GEMM bf16"}
    assert any(r.metric.startswith("speedup_vs:") for r in last) and any(r.metric == "floor_fraction" for r in last)
    if importlib.util.find_spec("matplotlib"):
        assert list((tiny_results / "tiny").glob("*-speedup.png"))


def test_markdown_without_results_is_one_line(tiny_results, capsys):
    assert cli.main(["bench", "--markdown"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("llmkernels bench: error: no results in") and "\n" not in err


def test_an_unknown_op_is_one_line_naming_the_choices(capsys):
    assert cli.main(["bench", "--op", "softmax"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--op must be one of attention," in err and "got 'softmax'" in err and "\n" not in err


@pytest.mark.parametrize("op", registry.op_names())
def test_every_case_builds_and_agrees_with_its_peer_at_toy_size(op):
    # The GPU plans too (built here on the CPU): their parameters reach the builders intact.
    plans = [(level, device) for level in ("quick", "full", "sweep") for device in ("cpu", "cuda")]
    for level, device in plans:
        for spec in registry.specs(op, level, device):
            case = spec.tiny().build("cpu")
            assert case.ours and (case.peers or not case.timed), spec.id
            if case.check is not None:
                case.check()
            assert registry.Spec.from_json(spec.to_json()) == spec


def test_no_benchmark_times_a_no_op():
    for path in (ROOT / "benchmarks").glob("*.py"):
        assert "lambda: None" not in path.read_text(), f"{path.name} times a no-op"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_device_check_without_a_gpu_exits_at_once_with_one_line():
    start = time.monotonic()
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "device_check.sh")], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert done.returncode != 0
    assert done.stdout == "" and done.stderr.count("\n") == 1 and "no GPU" in done.stderr, done.stderr
    assert time.monotonic() - start < 10


def test_a_failing_case_is_reported_and_the_run_goes_on(tiny_results, monkeypatch, capsys):
    from llmkernels.bench import case as case_module

    def broken(device, tiny=False):
        raise RuntimeError("kernel disagrees with its peer")

    monkeypatch.setitem(case_module.BUILDERS, "broken", broken)
    monkeypatch.setitem(case_module.OPS, "broken", lambda level, device: [case_module.Spec.of("broken")] * 2)
    assert cli.main(["bench", "--op", "broken", "--quick", "--device", "cpu"]) == 1
    out = capsys.readouterr().out
    assert out.count("broken: FAILED: RuntimeError: kernel disagrees with its peer") == 2
    assert "2 case(s) failed" in out and list((tiny_results / "tiny").glob("*.csv"))  # the ceilings still written
