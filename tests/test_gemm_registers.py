"""The CPU GEMM's 6x16 tile keeps its twelve accumulators in registers. Under -fwrapv, which
Python's build flags pass to every extension, GCC 12 stored each accumulator to the stack after
every update (the GEMM ran at half speed, with right results, so no correctness test sees it);
isa_begin.h compiles the kernel regions with no-wrapv for that. This compiles the AVX2 unit with
those flags and reads the tile's inner loop: its twelve FMAs with no stack access between them."""

import pathlib
import platform
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
COMPILER = shutil.which("g++")


def tile_loop(assembly: str) -> list[str]:
    """The lines of the `tile` function from its first FMA to its last."""
    lines = assembly.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"^_Z\S*4tile\S*:$", line))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].strip().startswith(".size"))
    body = lines[start:end]
    fmas = [i for i, line in enumerate(body) if "vfmadd" in line]
    return body[fmas[0]:fmas[-1] + 1] if fmas else []


@pytest.mark.skipif(COMPILER is None or platform.machine() not in ("x86_64", "AMD64"), reason="needs GCC on x86-64")
def test_the_tile_accumulates_in_registers():
    done = subprocess.run(
        [COMPILER, "-O3", "-fwrapv", "-std=c++20", f"-I{CSRC}", "-S", "-o", "-", str(CSRC / "gemm" / "gemm_cpu_avx2.cpp")],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loop = tile_loop(done.stdout)
    assert sum("vfmadd" in line for line in loop) == 12, "\n".join(loop)
    assert not [line for line in loop if "(%rsp)" in line or "(%rbp)" in line], "\n".join(loop)
