"""The build itself: in CI (`make test` sets LLMKERNELS_REQUIRE_EXTENSION=1) a failed compile of the
optional extension must fail the run instead of silently skipping every cpp case."""

import os

import pytest

from llmkernels import _native


@pytest.mark.skipif(os.environ.get("LLMKERNELS_REQUIRE_EXTENSION") != "1", reason="extension not required here")
def test_extension_was_built():
    info = _native.build_info()
    assert info["built"], info.get("reason")
    assert info["openmp"] and "generic" in info["cpu_isa_variants"]
    assert {"avx2", "avx512", "avx512bf16"} <= set(info["cpu_isa_variants"])  # x86-64 CI machines


def test_no_two_sources_compile_to_one_object_file():
    # ninja names an object after its source without the suffix: rotary_cuda.cpp beside rotary_cuda.cu
    # broke the whole CUDA build on the first GPU machine, which CPU CI (no .cu compiled) never saw.
    import importlib.util
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("llmkernels_setup", root / "setup.py")
    setup_py = importlib.util.module_from_spec(spec)
    source = (root / "setup.py").read_text().split("\nsetup(")[0]  # the helpers, not the setup() call
    exec(compile(source, str(root / "setup.py"), "exec"), setup_py.__dict__)
    sources = sorted(str(p.relative_to(root)) for p in (root / "csrc").rglob("*") if p.suffix in (".cpp", ".cu"))
    assert setup_py.object_name_clashes(sources) == []
    assert setup_py.object_name_clashes(["a/x_cuda.cpp", "a/x_cuda.cu", "a/y.cpp"]) == [["a/x_cuda.cpp", "a/x_cuda.cu"]]
