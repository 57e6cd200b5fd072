"""The CPU kernels below AVX-512 compare and select lanes only through cpu_vec_impl.h's helpers
(vlt, vgt, ..., vselect). GCC 12 expands a plain `<` or `?:` on 64-byte vectors one element at a
time, with branches, at the generic and AVX2 levels: a sigmoid ran 4.7x slower that way, and the
results stay right, so no correctness test sees it. GCC names each such spot when asked
(-Wvector-operation-performance: "vector condition will be expanded piecewise"); this compiles every
generic and AVX2 kernel unit at -O0 (the lowering that warns runs at every level) and wants none."""

import pathlib
import platform
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
UNITS = sorted(str(p.relative_to(CSRC)) for level in ("generic", "avx2") for p in CSRC.glob(f"*/*_cpu_{level}.cpp"))
COMPILER = shutil.which("g++")


def test_every_family_has_its_units():
    families = {p.parent.name for p in CSRC.glob("*/*_cpu_kernel_impl.h")}
    assert families and {unit.split("/")[0] for unit in UNITS} == families


@pytest.mark.skipif(COMPILER is None or platform.machine() not in ("x86_64", "AMD64"), reason="needs GCC on x86-64")
@pytest.mark.parametrize("unit", UNITS)
def test_no_vector_condition_runs_element_by_element(unit):
    done = subprocess.run(
        [COMPILER, "-O0", "-std=c++20", f"-I{CSRC}", "-S", "-o", "/dev/null", "-Wvector-operation-performance",
         "-Wno-psabi", str(CSRC / unit)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    piecewise = [line for line in done.stderr.splitlines() if "vector condition will be expanded piecewise" in line]
    assert piecewise == [], "\n".join(piecewise[:10])
