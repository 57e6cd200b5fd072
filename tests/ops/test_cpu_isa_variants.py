"""Each compiled CPU ISA variant (generic, AVX2, AVX-512, AVX512-BF16) against the reference."""

import os
import subprocess
import sys

import pytest
import torch

import llmkernels
from llmkernels import _native
from tests.helpers import assert_close
from tests.ops.test_rotary import _expected

C = _native.extension()
pytestmark = pytest.mark.skipif(C is None, reason="llmkernels._C is not built")
LEVELS = C.build_info()["cpu_isa_supported"] if C is not None else []


@pytest.fixture
def forced_isa(request):
    previous = C.cpu_isa()
    C.set_cpu_isa(request.param)
    yield request.param
    C.set_cpu_isa(previous)


@pytest.mark.parametrize("forced_isa", LEVELS, indirect=True)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("interleaved", [False, True])
def test_rotary_every_isa(forced_isa, dtype, interleaved):
    assert C.cpu_isa() == forced_isa
    # head_dim 70 / rotary 38: row lengths that are not a multiple of any vector width.
    q = torch.randn(2, 3, 37, 70, dtype=dtype)
    k = torch.randn(2, 1, 37, 70, dtype=dtype)
    cos, sin = llmkernels.rope_cache(40, 38)
    positions = torch.randint(0, 40, (2, 37))
    with llmkernels.use_backend("cpp"):
        q_out, k_out = llmkernels.apply_rotary(q, k, cos, sin, positions, interleaved=interleaved)
        q_back = torch.ops.llmkernels.rotary_embedding_backward(q_out, cos, sin, positions, interleaved, "cpp")
    assert_close(q_out, _expected(q, cos, sin, positions, interleaved), dtype)
    assert_close(k_out, _expected(k, cos, sin, positions, interleaved), dtype)
    assert_close(q_back, _expected(q_out, cos, sin, positions, interleaved, conjugate=True), dtype)


@pytest.mark.parametrize("forced_isa", LEVELS, indirect=True)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_sinusoidal_every_isa(forced_isa, dtype):
    x = torch.randn(3, 29, 45, dtype=dtype)
    with llmkernels.use_backend("cpp"):
        out = llmkernels.add_sinusoidal_position_encoding(x, scale=0.7)
    with llmkernels.use_backend("reference"):
        expected = llmkernels.add_sinusoidal_position_encoding(x.double(), scale=0.7)
    assert_close(out, expected, dtype)


def test_unsupported_isa_is_refused():
    with pytest.raises(ValueError, match="generic"):
        C.set_cpu_isa("sse9")


# One process (importing torch costs seconds): the variable is read at the first cpp kernel call,
# and a refused value leaves the level unset, so each call reads the variable again.
_ISA_FROM_ENV = (
    "import os, torch, llmkernels\n"
    "from llmkernels import _native\n"
    "for value in ('sse9', 'AVX2', 'avx512bf16 ', 'generic'):\n"
    "    os.environ['LLMKERNELS_CPU_ISA'] = value\n"
    "    with llmkernels.use_backend('cpp'):\n"
    "        try:\n"
    "            llmkernels.cross_entropy(torch.randn(3, 5), torch.tensor([0, 1, 2]))\n"
    "        except ValueError as error:\n"
    "            print(repr(value), 'ValueError:', error)\n"
    "        else:\n"
    "            print(repr(value), 'ran at', _native.extension().cpu_isa())\n"
)


def test_a_bad_isa_environment_value_is_refused():
    # It only warned and ran at another level than the one asked for.
    result = subprocess.run([sys.executable, "-W", "error", "-c", _ISA_FROM_ENV], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4, result.stdout
    for line, value in zip(lines[:3], ("'sse9'", "'AVX2'", "'avx512bf16 '")):
        assert line.startswith(f"{value} ValueError: llmkernels: LLMKERNELS_CPU_ISA="), line
        assert f"accepted values: {', '.join(LEVELS)}" in line
    assert lines[3] == "'generic' ran at generic"


def test_deterministic_across_thread_counts():
    q = torch.randn(2, 4, 300, 64)
    cos, sin = llmkernels.rope_cache(300, 64)
    threads = torch.get_num_threads()
    try:
        results = []
        for count in (1, threads):
            torch.set_num_threads(count)
            with llmkernels.use_backend("cpp"):
                results.append(llmkernels.rotary_embedding(q, cos, sin))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0], results[1])
