"""The losses' forwards read nothing on the host for tensors the host must not read (GPU tensors).

There is no GPU here, so the device paths run on a CPU: HOST_VALUE_DEVICES is emptied (CPU
tensors are then treated as a GPU's are: device-side asserts, 0-dim device denominators and
gradient factors) and every way Python reads a tensor's value on the host (item, tolist, int,
float, bool, index) raises while the op runs. Before, a 'mean' forward read its denominator with
float() (a GPU sync per step) and targets were not range-checked at all on a GPU.
"""

import contextlib

import pytest
import torch

import llmkernels
from llmkernels.ops.common import checks
from tests.helpers import assert_close

BACKENDS = [b for b in ("reference", "cpp") if b in llmkernels.available_backends("cpu", "cross_entropy")]
HOST_READS = ("item", "tolist", "__int__", "__float__", "__bool__", "__index__")


@contextlib.contextmanager
def no_host_reads(monkeypatch):
    """Inside: tensors are treated as device tensors, and a host read of one fails the test."""
    with monkeypatch.context() as patch:
        patch.setattr(checks, "HOST_VALUE_DEVICES", ())
        for name in HOST_READS:
            def refuse(self, *args, _name=name, **kwargs):
                raise AssertionError(f"host read of a tensor: Tensor.{_name}")
            patch.setattr(torch.Tensor, name, refuse)
        yield


def _problem(rows=37, classes=50, hidden=16):
    target = torch.randint(0, classes, (rows,))
    target[::5] = -100
    return torch.randn(rows, classes), target, torch.rand(classes) + 0.5, torch.randn(rows, hidden), torch.randn(classes, hidden) / 4


def _run_both(monkeypatch, fn):
    """fn() with host reads allowed, then fn() in the device mode; their outputs."""
    expected = fn()
    with no_host_reads(monkeypatch):
        actual = fn()
    return actual, expected


def _check_formed(monkeypatch, loss_fn, leaves):
    def run():
        copies = [leaf.detach().clone().requires_grad_(True) for leaf in leaves]
        loss = loss_fn(*copies)
        return loss, copies

    (loss, copies), (expected_loss, expected_copies) = _run_both(monkeypatch, run)
    assert_close(loss.detach(), expected_loss.detach())
    # The backward of a formed gradient with an upstream of 1 reads nothing either.
    grads = torch.autograd.grad(loss, copies)
    for got, want in zip(grads, torch.autograd.grad(expected_loss, expected_copies)):
        assert_close(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("options", [{}, {"z_loss": 1e-2, "weight": True}, {"label_smoothing": 0.1}], ids=["plain", "weight-z", "smooth"])
def test_cross_entropy_forward(monkeypatch, backend, options):
    logits, target, class_weight, _, _ = _problem()
    kwargs = {k: v for k, v in options.items() if k != "weight"}
    weight = class_weight if options.get("weight") else None
    with llmkernels.use_backend(backend):
        actual, expected = _run_both(monkeypatch, lambda: llmkernels.cross_entropy(logits, target, weight=weight, **kwargs))
    assert torch.equal(actual, expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("options", [{}, {"z_loss": 1e-2}, {"weight": True}], ids=["plain", "z", "weight"])
def test_linear_cross_entropy_forms_its_gradient_on_the_device(monkeypatch, backend, options):
    _, target, class_weight, x, w = _problem()
    kwargs = {k: v for k, v in options.items() if k != "weight"}
    weight = class_weight if options.get("weight") else None
    with llmkernels.use_backend(backend):
        _check_formed(monkeypatch, lambda a, b: llmkernels.linear_cross_entropy(a, b, target, weight=weight, chunk_size=8, **kwargs), [x, w])


@pytest.mark.parametrize("backend", BACKENDS)
def test_distillation_forms_its_gradient_on_the_device(monkeypatch, backend):
    student, target, _, _, _ = _problem()
    teacher = torch.randn_like(student)
    with llmkernels.use_backend(backend):
        _check_formed(monkeypatch, lambda s: llmkernels.distillation_loss(s, teacher, target, hard_weight=0.3), [student])


@pytest.mark.parametrize("backend", BACKENDS)
def test_linear_distillation_forms_its_gradient_on_the_device(monkeypatch, backend):
    _, target, _, x, w = _problem()
    teacher_x, teacher_w = torch.randn_like(x), torch.randn_like(w)
    with llmkernels.use_backend(backend):
        _check_formed(
            monkeypatch,
            lambda a, b: llmkernels.linear_distillation_loss(a, b, teacher_x, teacher_w, target, hard_weight=0.3, chunk_size=8),
            [x, w],
        )


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: llmkernels.cross_entropy(torch.randn(4, 5), torch.tensor([0, 1, 5, -100])), "target values must lie in"),
        (lambda: llmkernels.cross_entropy(torch.randn(4, 5), torch.tensor([0, -3, 1, 2])), "target values must lie in"),
        (lambda: llmkernels.distillation_loss(torch.randn(2, 5), torch.randn(2, 5), torch.tensor([7, 0])), "target values must lie in"),
        (lambda: llmkernels.rotary_embedding(torch.randn(1, 1, 2, 4), *llmkernels.rope_cache(3, 4), torch.tensor([0, 3])), "position_ids must lie in"),
        (lambda: llmkernels.add_sinusoidal_position_encoding(torch.randn(1, 2, 4), torch.tensor([0, -1])), "position_ids must be >= 0"),
    ],
)
def test_out_of_range_indices_are_caught_on_the_device(monkeypatch, call, match):
    # torch._assert_async raises at once on a CPU (at the next sync on a GPU, before the result
    # can be read): an index the kernels would read out of bounds with never reaches them unseen.
    with monkeypatch.context() as patch:
        patch.setattr(checks, "HOST_VALUE_DEVICES", ())
        with llmkernels.use_backend("reference"), pytest.raises(RuntimeError, match=match):
            call()
