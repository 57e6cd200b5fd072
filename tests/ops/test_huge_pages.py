"""Large outputs of the CPU ops ask Linux for 2 MB pages before their first touch (csrc/common/
huge_pages.h): the cross-entropy gradient and the gated units' outputs. Checked on the mapping that
holds each output: its VmFlags in /proc/self/smaps carry `hg` (MADV_HUGEPAGE)."""

import os

import pytest
import torch

import llmkernels
from llmkernels import _native

THP = "/sys/kernel/mm/transparent_hugepage/enabled"
pytestmark = [
    pytest.mark.skipif(not os.path.exists(THP), reason="no transparent huge pages on this system"),
    pytest.mark.skipif(not _native.build_info()["built"], reason="llmkernels._C is not built"),
]


def _advised(tensor) -> bool:
    """Whether the mapping that holds the tensor's middle byte was advised MADV_HUGEPAGE."""
    address = tensor.data_ptr() + tensor.nbytes // 2
    inside = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()[0]
            if "-" in head and all(c in "0123456789abcdef-" for c in head):
                start, end = (int(x, 16) for x in head.split("-"))
                inside = start <= address < end
            elif inside and head == "VmFlags:":
                return "hg" in line.split()[1:]
    raise AssertionError("no mapping holds the tensor")


def test_cross_entropy_gradient_is_advised():
    logits = torch.randn(512, 8192, requires_grad=True)  # a 16 MB gradient
    target = torch.randint(0, 8192, (512,))
    with llmkernels.use_backend("cpp"):
        (grad,) = torch.autograd.grad(llmkernels.cross_entropy(logits, target), logits)
    assert _advised(grad)


def test_swiglu_outputs_are_advised():
    gate = torch.randn(1024, 4096, requires_grad=True)  # 16 MB each
    up = torch.randn(1024, 4096, requires_grad=True)
    with llmkernels.use_backend("cpp"):
        out = llmkernels.swiglu(gate, up)
        grad_gate, grad_up = torch.autograd.grad(out, (gate, up), torch.ones_like(out))
    assert _advised(out) and _advised(grad_gate) and _advised(grad_up)

