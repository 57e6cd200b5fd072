"""The cpp sinusoidal path's cost is bounded by the rows asked for, not by the largest position id.

It used to build (and cache) a (max_position + 1, d_model) table: one position id of 2,000,000 at
d_model 1024 cost ~40 s and ~15 GB, and generation (one position further each token) rebuilt the
table every token. The spy below refuses a table past the bound before it is allocated, so the
old code fails fast here instead of exhausting the machine.
"""

import time

import pytest
import torch

import llmkernels
import llmkernels.ops.sinusoidal as sinusoidal_ops
from tests.helpers import assert_close

pytestmark = pytest.mark.skipif(
    "cpp" not in llmkernels.available_backends("cpu", "add_sinusoidal_position_encoding"), reason="cpp not built"
)


@pytest.fixture
def table_builds(monkeypatch):
    """The row counts of every PE table the cpp path builds; a table past the bound is refused."""
    rows, cached = [], sinusoidal_ops._cpu_table

    def spy(num_positions, d_model, base):
        assert num_positions <= 2 * sinusoidal_ops.TABLE_MIN_ROWS, f"a {num_positions}-row PE table"
        misses = cached.cache_info().misses
        result = cached(num_positions, d_model, base)
        if cached.cache_info().misses > misses:
            rows.append(num_positions)
        return result

    cached.cache_clear()
    monkeypatch.setattr(sinusoidal_ops, "_cpu_table", spy)
    yield rows
    cached.cache_clear()


def _expected(x, positions, scale=1.0):
    with llmkernels.use_backend("reference"):
        return llmkernels.add_sinusoidal_position_encoding(x.double(), positions, scale=scale)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_huge_position_id_is_fast_and_exact(table_builds, dtype):
    x = torch.randn(2, 4, 1024, dtype=dtype)
    positions = torch.tensor([[0, 1, 2, 2_000_000], [3, 2_000_000, 1_999_999, 70_000]])
    start = time.perf_counter()
    with llmkernels.use_backend("cpp"):
        out = llmkernels.add_sinusoidal_position_encoding(x, positions, scale=0.5)
    assert time.perf_counter() - start < 5.0  # was ~40 s; the four rows take well under a millisecond
    assert table_builds and max(table_builds) <= 2 * sinusoidal_ops.TABLE_MIN_ROWS
    assert_close(out, _expected(x, positions, scale=0.5), dtype)


@pytest.mark.parametrize("d_model", [1, 7, 33, 300])
def test_positions_past_the_table_match_the_reference(table_builds, d_model):
    # Odd widths (the last column is a sin), rows inside and past the table in one call.
    x = torch.randn(3, 5, d_model)
    positions = torch.randint(0, 10**7, (3, 5))
    positions[0] = torch.arange(5)
    with llmkernels.use_backend("cpp"):
        out = llmkernels.add_sinusoidal_position_encoding(x, positions)
    assert_close(out, _expected(x, positions))


def test_generation_does_not_rebuild_the_table_every_token(table_builds):
    x = torch.randn(1, 1, 64)
    with llmkernels.use_backend("cpp"):
        for position in range(300):
            out = llmkernels.add_sinusoidal_position_encoding(x, torch.tensor([position]))
            assert_close(out, _expected(x, torch.tensor([position])))
    # Power-of-two table sizes: 1, 2, 4, ..., 512 rows, not one table per token.
    assert len(table_builds) <= 10, table_builds
