"""cross_entropy(..., inplace_backward=True): the gradient formed over the logits in the forward."""

import pytest
import torch

import llmkernels
from tests.helpers import assert_close, backend_cases, skip_unless_present
from tests.ops.test_cross_entropy import _inputs


@pytest.mark.parametrize("device,backend,dtype", backend_cases("cross_entropy") + [pytest.param("cpu", "reference", torch.float32, id="cpu-reference-float32")])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", [{}, {"weight": True, "label_smoothing": 0.1, "z_loss": 1e-3}, {"softcap": 5.0}],
                         ids=["plain", "weight+smooth+z", "softcap"])
def test_inplace_matches_the_reference_path(device, backend, dtype, reduction, options):
    skip_unless_present("cross_entropy", device, backend, dtype)
    rows, classes = (9, 300) if backend == "triton" and device == "cpu" else (37, 1000)
    logits, target = _inputs(rows, classes, dtype, device)
    kwargs = {k: v for k, v in options.items() if k != "weight"}
    if options.get("weight"):
        kwargs["weight"] = torch.rand(classes, device=device) + 0.5
    upstream = torch.randn(rows, device=device) if reduction == "none" else torch.tensor(1.7, device=device)

    source = logits.clone().requires_grad_(True)
    with llmkernels.use_backend(backend):
        produced = source * 1.0  # a computed tensor (not a leaf): the one that gets overwritten
        loss = llmkernels.cross_entropy(produced, target, reduction=reduction, inplace_backward=True, **kwargs)
    loss.backward(upstream.to(loss.dtype))

    expected_source = logits.float().clone().requires_grad_(True)
    with llmkernels.use_backend("reference"):
        expected = llmkernels.cross_entropy(expected_source, target, reduction=reduction, **kwargs)
    expected.backward(upstream)
    assert_close(loss, expected, dtype)
    assert_close(source.grad, expected_source.grad, dtype)


def test_the_gradient_is_the_logits_own_buffer():
    source = torch.randn(16, 50, requires_grad=True)
    target = torch.randint(0, 50, (16,))
    produced = source * 2.0
    buffer = produced.data_ptr()
    seen = []
    produced.register_hook(lambda grad: seen.append(grad.data_ptr()))
    loss = llmkernels.cross_entropy(produced, target, inplace_backward=True)
    # After the forward the logits hold d(loss)/d(logits) already: softmax - one-hot, over the rows.
    expected = (torch.softmax(source.detach() * 2.0, -1) - torch.nn.functional.one_hot(target, 50)) / 16
    assert_close(produced.detach(), expected, torch.float32)
    loss.backward()
    assert seen == [buffer]  # no second (N, C) buffer: the upstream 1 needs no scaling


def test_logits_that_are_a_view_of_the_projection():
    # (B, T, V) projection output flattened to (B * T, V): a view, as a model's logits usually are.
    hidden, weight = torch.randn(2, 5, 8, requires_grad=True), torch.randn(30, 8, requires_grad=True)
    target = torch.randint(0, 30, (10,))
    loss = llmkernels.cross_entropy((hidden @ weight.T).view(-1, 30), target, inplace_backward=True)
    loss.backward()
    expected_hidden, expected_weight = hidden.detach().clone().requires_grad_(True), weight.detach().clone().requires_grad_(True)
    llmkernels.cross_entropy((expected_hidden @ expected_weight.T).view(-1, 30), target).backward()
    assert_close(hidden.grad, expected_hidden.grad, torch.float32)
    assert_close(weight.grad, expected_weight.grad, torch.float32)


def test_a_leaf_is_left_untouched():
    logits = torch.randn(8, 20, requires_grad=True)
    before = logits.detach().clone()
    target = torch.randint(0, 20, (8,))
    llmkernels.cross_entropy(logits, target, inplace_backward=True).backward()
    assert torch.equal(logits.detach(), before)
    expected_logits = before.clone().requires_grad_(True)
    llmkernels.cross_entropy(expected_logits, target).backward()
    assert torch.equal(logits.grad, expected_logits.grad)


def test_an_op_that_saved_the_logits_makes_autograd_refuse():
    source = torch.randn(8, 20, requires_grad=True)
    logits = source.exp()  # exp saves its output for its backward
    loss = llmkernels.cross_entropy(logits, torch.randint(0, 20, (8,)), inplace_backward=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_inplace_backward_must_be_a_bool():
    with pytest.raises(TypeError, match="inplace_backward"):
        llmkernels.cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]), inplace_backward="yes")


def test_opcheck_of_the_mutating_op():
    logits = torch.randn(6, 11)
    target = torch.randint(0, 11, (6,))
    for backend in [b for b in ("reference", "cpp") if b in llmkernels.available_backends("cpu", "cross_entropy")]:
        torch.library.opcheck(torch.ops.llmkernels.cross_entropy_inplace.default,
                              (logits.clone(), target, None, -100, "mean", 0.0, 0.0, None, backend))
