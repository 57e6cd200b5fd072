"""Test set-up shared by every test file.

Triton runs kernels on CPU tensors only through its interpreter, and reads TRITON_INTERPRET when
kernels are defined: set it before anything imports triton or llmkernels.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import llmkernels  # noqa: E402

GPU = torch.cuda.is_available()


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped cleanly without one)")
    config.addinivalue_line("markers", "slow: longer CPU tests")


def pytest_collection_modifyitems(config, items):
    if GPU:
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_seed():
    # Fresh random inputs each run (the seed is printed on failure by the test id), yet a failing
    # case can be replayed with LLMKERNELS_TEST_SEED.
    seed = int(os.environ.get("LLMKERNELS_TEST_SEED", torch.seed() % (2**31)))
    torch.manual_seed(seed)
    print(f"LLMKERNELS_TEST_SEED={seed}")  # shown with a failure's captured output
    yield seed
