"""The results CSV (append with one header), the markdown generator on a fixture, and the plots."""

from __future__ import annotations

import pytest

from llmkernels.bench import markdown, plots, results
from llmkernels.bench.results import HEADER, Row

CPU, GPU = "cpu: Test CPU, 2 cores", "cuda: NVIDIA H200"


def _rows(device, date, speedup=2.0, shape="N=4096 V=32000 fp32"):
    context = dict(device=device, versions="torch 2.13.0", commit="abc1234", date=date)
    return [
        Row("ceiling", "copy (warm)", "-", "GB/s", "256 MB", 33.2, 31.8, 34.5, **context),
        Row("cross_entropy", "F.cross_entropy", "fwd+bwd", "seconds", shape, 0.9, 0.85, 0.95, **context),
        Row("cross_entropy", "llmkernels[cpp]", "fwd+bwd", "seconds", shape, 0.45, 0.44, 0.5, **context),
        Row("cross_entropy", "llmkernels[cpp]", "fwd+bwd", "speedup_vs:F.cross_entropy", shape, speedup, 1.9, 2.1, **context),
        Row("cross_entropy", "llmkernels[cpp]", "fwd+bwd", "target_vs:F.cross_entropy", shape, 2.5, 2.5, 2.5, **context),
        Row("cross_entropy", "llmkernels[cpp]", "fwd+bwd", "floor_fraction", shape, 0.42, 0.4, 0.44, **context),
        Row("cross_entropy", "llmkernels[cpp]", "fwd+bwd", "GFLOP/s", shape, 2500.0, 2400.0, 2600.0, **context),
        Row("cross_entropy", "llmkernels[cpp]", "fwd+bwd", "peak_mb", shape, 145.5, 145.5, 145.5, **context),
    ]


def test_append_writes_the_header_once_and_rows_read_back(tmp_path):
    path = tmp_path / "sub" / "cpu.csv"
    results.append(str(path), _rows(CPU, "2026-11-30T01:00:00Z"))
    results.append(str(path), _rows(CPU, "2026-11-30T02:00:00Z"))
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(HEADER)
    assert sum(line.startswith("op,") for line in lines) == 1 and len(lines) == 1 + 16
    back = results.read(str(path))
    assert back[3].metric == "speedup_vs:F.cross_entropy" and back[3].median == 2.0 and back[-1].date.startswith("2026-11-30T02")


def test_a_foreign_csv_is_refused_by_name(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="other.csv: not a benchmark results file"):
        results.read(str(path))


def test_stamp_fills_the_run_context_once_for_every_row():
    stamped = results.stamp([Row("op", "p", "fwd", "seconds", "S=1", 1.0, 1.0, 1.0)] * 2, CPU)
    assert stamped[0].device == CPU and stamped[0].date == stamped[1].date and "torch" in stamped[0].versions


def test_markdown_from_a_fixture_shows_the_newest_run_per_case_dated_with_machine_and_versions():
    old = _rows(CPU, "2026-11-29T01:00:00Z", speedup=1.1) + \
        _rows(CPU, "2026-11-29T01:00:00Z", speedup=1.3, shape="N=4096 V=8192 fp32")  # not measured again since
    new = _rows(CPU, "2026-11-30T01:00:00Z", speedup=2.7)
    text = markdown.render({"benchmarks/results/cpu.csv": old + new})
    assert "1.30x (1.90-2.10)" in text
    assert "## 2026-11-29 to 2026-11-30, CPU, Test CPU, 2 cores" in text
    assert "torch 2.13.0" in text and "abc1234" in text and "copy (warm) 256 MB: 33.2 GB/s (31.8-34.5)" in text
    line = next(line for line in text.splitlines() if line.startswith("| cross_entropy |"))
    assert "**2.70x (1.90-2.10)**" in line and ">= 2.5x: met" in line and "450.00" in line and "900.00" in line
    assert "42%" in line and "1.10x" not in text  # the older run's figure is superseded
    assert "llmkernels[cpp] 145.5" in text
    assert "GPU" not in text  # no GPU run, no GPU table


def test_markdown_labels_gpu_tables_with_the_card_and_lists_cpu_first():
    rows = {"benchmarks/results/nvidia.csv": _rows(GPU, "2026-11-30T03:00:00Z", speedup=1.2),
            "benchmarks/results/zcpu.csv": _rows(CPU, "2026-11-30T01:00:00Z")}
    text = markdown.render(rows)
    assert text.index("CPU, Test CPU") < text.index("## 2026-11-30, GPU, NVIDIA H200")
    assert "2.5 TFLOP/s (2.4-2.6)" in text  # the GPU section has the rate table
    assert "1.20x (1.90-2.10) | >= 2.5x: **missed**" in text


def test_plots_are_drawn_from_the_whole_csv(tmp_path):
    pytest.importorskip("matplotlib")
    rows = []
    for v in (8192, 32768):
        rows += _rows(CPU, "2026-11-30T01:00:00Z", shape=f"N=4096 V={v} fp32")
    written = plots.draw(rows, str(tmp_path))
    assert sorted(p.rsplit("/", 1)[1] for p in written) == ["cpu-test-cpu-2-cores-memory.png", "cpu-test-cpu-2-cores-speedup.png"]
    assert all((tmp_path / p.rsplit("/", 1)[1]).stat().st_size > 1000 for p in written)


def test_size_and_series_are_read_from_the_shape():
    row = Row("attention", "SDPA", "fwd", "seconds", "B=1 H=8 S=2048 D=64 causal fp32", 1, 1, 1)
    assert results.size_of(row) == 2048 and results.series_of(row) == "B=1 H=8 D=64 causal fp32"
    row = Row("linear_cross_entropy", "p", "fwd+bwd", "seconds", "N=2048 H=512 V=32768 fp32", 1, 1, 1)
    assert results.size_of(row) == 32768 and results.series_of(row) == "N=2048 H=512 fp32"
