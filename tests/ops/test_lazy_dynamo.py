"""Eager calls of the ops do not import torch._dynamo (ops/common/lazy_dynamo.py); compiled calls still work."""

import subprocess
import sys

_CHILD = r"""
import sys, torch, llmkernels
q, k, v = (torch.randn(1, 2, 8, 16, requires_grad=True) for _ in range(3))
llmkernels.attention(q, k, v, causal=True).sum().backward()
llmkernels.cross_entropy(torch.randn(4, 10, requires_grad=True), torch.tensor([1, 2, 3, 4])).backward()
llmkernels.rms_norm(torch.randn(3, 8, requires_grad=True), torch.ones(8)).sum().backward()
print("torch._dynamo" in sys.modules)
"""


def test_eager_calls_do_not_import_dynamo():
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr


def test_every_op_implementation_has_the_lazy_import():
    import llmkernels  # noqa: F401
    from torch._library import custom_ops

    ours = [d for n, d in custom_ops.OPDEFS.items() if n.startswith("llmkernels::")]
    assert ours
    for opdef in ours:
        for wrapper in opdef._backend_fns.values():
            assert getattr(wrapper.__wrapped__, "__dynamo_disable", None) is not None, opdef._qualname
