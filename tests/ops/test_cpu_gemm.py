"""llmkernels' float32 CPU GEMM (csrc/gemm) against a float64 product, on fresh random operands of
every layout the fused linear losses pass (x @ W.T, grad.T @ x), ragged sizes across every block
edge (6-row and 16-column tiles, 512-deep and 2048-wide slices, thread splits), accumulation, and
its argument checks."""

import os

import pytest
import torch

from llmkernels import _native
from llmkernels.ops.common import cpu_gemm

C = _native.extension()


def _have_kernel():
    if C is None:
        if os.environ.get("LLMKERNELS_REQUIRE_EXTENSION") == "1":
            pytest.fail(f"the extension was not built: {_native.build_info().get('reason')}")
        pytest.skip("extension not built")
    if "avx2" not in C.build_info()["cpu_isa_supported"]:
        pytest.skip("this CPU has no AVX2")


@pytest.fixture
def avx2():
    """The AVX2 level selected (the kernel's only level) for the test, the previous one after."""
    _have_kernel()
    previous = C.cpu_isa()
    C.set_cpu_isa("avx2")
    yield
    C.set_cpu_isa(previous)


def _operand(rows, cols, layout):
    """A (rows, cols) float32 matrix from the seeded global generator (LLMKERNELS_TEST_SEED replays
    a failure), stored as `layout`: row-major, column-major (a transposed view), or a strided slice
    of a larger buffer."""
    if layout == "rows":
        return torch.randn(rows, cols)
    if layout == "cols":
        return torch.randn(cols, rows).t()
    return torch.randn(rows + 3, 2 * cols + 1)[1:rows + 1, 1::2]


def _check(out, a, b, start=None):
    """Each element within the probabilistic rounding bound of a float32 sum of k terms,
    2 sqrt(k) eps (|a| @ |b| + |start|), against the float64 product."""
    expected = a.double() @ b.double()
    magnitude = a.double().abs() @ b.double().abs()
    if start is not None:
        expected += start.double()
        magnitude += start.double().abs()
    bound = 2 * max(a.shape[1], 1) ** 0.5 * torch.finfo(torch.float32).eps * magnitude + 1e-30
    error = (out.double() - expected).abs()
    assert not out.isnan().any() and (error <= bound).all(), f"worst error/bound {(error / bound).max():.2f}"


SHAPES = [(1, 1, 1), (5, 7, 3), (6, 16, 8), (47, 33, 513), (97, 2050, 64), (263, 300, 1100), (49, 17, 1024)]


@pytest.mark.parametrize("m,n,k", SHAPES, ids=lambda v: str(v))
@pytest.mark.parametrize("a_layout", ["rows", "cols", "strided"])
@pytest.mark.parametrize("b_layout", ["rows", "cols", "strided"])
def test_matches_float64_product(avx2, m, n, k, a_layout, b_layout):
    a = _operand(m, k, a_layout)
    b = _operand(k, n, b_layout)
    out = torch.full((m, n), float("nan"))
    C.gemm_cpu(a, b, out, False)
    _check(out, a, b)
    start = torch.randn(m, n)
    summed = start.clone()
    C.gemm_cpu(a, b, summed, True)
    _check(summed, a, b, start)


def test_writes_into_a_strided_output(avx2):
    a, b = torch.randn(70, 300), torch.randn(400, 300).t()
    buffer = torch.full((70, 500), 7.0)
    C.gemm_cpu(a, b, buffer[:, 50:450], False)
    _check(buffer[:, 50:450], a, b)
    assert (buffer[:, :50] == 7).all() and (buffer[:, 450:] == 7).all()


@pytest.mark.parametrize("shape", [(300, 40, 200), (40, 3000, 200)], ids=["split-rows", "split-columns"])
def test_any_thread_count_gives_the_same_bits(avx2, shape):
    m, n, k = shape
    a, b = torch.randn(m, k), torch.randn(n, k).t()
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            out = torch.empty(m, n)
            C.gemm_cpu(a, b, out, False)
            results.append(out)
    finally:
        torch.set_num_threads(previous)
    assert all(torch.equal(results[0], r) for r in results[1:])


def test_empty_depth_writes_zeros_or_keeps_the_sum(avx2):
    a, b = torch.empty(4, 0), torch.empty(0, 5)
    out = torch.full((4, 5), 3.0)
    C.gemm_cpu(a, b, out, True)
    assert (out == 3).all()
    C.gemm_cpu(a, b, out, False)
    assert (out == 0).all()


@pytest.mark.parametrize("case,argument", [
    ("float64 a", "a"), ("1-d b", "b"), ("depth mismatch", "b"), ("wrong out shape", "out"),
    ("out overlaps a", "out"), ("out column stride", "out"),
])
def test_bad_arguments_are_refused_by_name(avx2, case, argument):
    a, b, out = torch.randn(8, 4), torch.randn(4, 6), torch.empty(8, 6)
    if case == "float64 a":
        a = a.double()
    elif case == "1-d b":
        b = torch.randn(4)
    elif case == "depth mismatch":
        b = torch.randn(5, 6)
    elif case == "wrong out shape":
        out = torch.empty(6, 8)
    elif case == "out overlaps a":
        a = torch.randn(8, 8)
        b = torch.randn(8, 8)
        out = a
    elif case == "out column stride":
        out = torch.empty(6, 8).t()
    with pytest.raises(ValueError, match=f"argument '{argument}'"):
        C.gemm_cpu(a, b, out, False)


def test_other_isa_levels_refuse_and_the_losses_keep_torch_mm():
    _have_kernel()
    previous = C.cpu_isa()
    try:
        C.set_cpu_isa("generic")
        assert not C.gemm_cpu_available()
        with pytest.raises(ValueError, match="it needs AVX2"):
            C.gemm_cpu(torch.randn(2, 2), torch.randn(2, 2), torch.empty(2, 2), False)
        a, b = torch.randn(300, 200), torch.randn(200, 100)
        assert not cpu_gemm.uses_own_gemm(a, b, "cpp")
        torch.testing.assert_close(cpu_gemm.mm_into(a, b, torch.empty(300, 100), "cpp"), a @ b)
    finally:
        C.set_cpu_isa(previous)


def test_only_the_cpp_backend_and_float32_use_it(avx2):
    a, b = torch.randn(300, 200), torch.randn(200, 100)
    assert cpu_gemm.uses_own_gemm(a, b, "cpp")
    assert not cpu_gemm.uses_own_gemm(a, b, "reference")
    assert not cpu_gemm.uses_own_gemm(a.double(), b.double(), "cpp")
    assert not cpu_gemm.uses_own_gemm(a[:10, :10], b[:10, :10], "cpp")  # too small to gain
    out = torch.empty(300, 100)
    _check(cpu_gemm.mm_into(a, b, out, "cpp"), a, b)
    start = out.clone()
    _check(cpu_gemm.mm_into(a, b, out, "cpp", accumulate=True), a, b, start)
