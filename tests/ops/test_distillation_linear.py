"""Fused linear distillation losses against the logits ops on full float64 logits."""

import pytest
import torch

import llmkernels
from tests.helpers import assert_close_scaled, skip_unless_present


def _problem(rows, h_s, h_t, v_s, v_t, dtype=torch.float32, bias=True):
    s_x = (torch.randn(rows, h_s) / h_s**0.25).to(dtype)
    s_w = (torch.randn(v_s, h_s) / h_s**0.25).to(dtype)
    t_x = (torch.randn(rows, h_t) / h_t**0.25).to(dtype)
    t_w = (torch.randn(v_t, h_t) / h_t**0.25).to(dtype)
    s_b = torch.randn(v_s).to(dtype) if bias else None
    t_b = torch.randn(v_t).to(dtype) if bias else None
    target = torch.randint(0, v_s, (rows,))
    target[torch.rand(rows) < 0.2] = -100
    return s_x, s_w, s_b, t_x, t_w, t_b, target


def _present(backend, op, dtype=torch.float32):
    if backend != "reference":
        skip_unless_present(op, "cpu", backend, dtype)


@pytest.mark.parametrize("backend", ["reference", "cpp", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", [dict(beta=0.0, temperature=2.0), dict(beta=0.5, temperature=1.5, hard_weight=0.3, softcap=6.0)], ids=["kl", "jsd-all"])
@pytest.mark.parametrize("chunk_size", [None, 5])
def test_linear_matches_full_logits(backend, dtype, reduction, options, chunk_size):
    _present(backend, "linear_distillation_loss", dtype)
    s_x, s_w, s_b, t_x, t_w, t_b, target = _problem(23, 16, 24, 60, 56, dtype)
    leaves = [p.clone().requires_grad_(True) for p in (s_x, s_w, s_b)]
    with llmkernels.use_backend(backend):
        loss = llmkernels.linear_distillation_loss(
            leaves[0], leaves[1], t_x, t_w, target, student_bias=leaves[2], teacher_bias=t_b, reduction=reduction,
            chunk_size=chunk_size, **options,
        )
    ref = [p.detach().double().requires_grad_(True) for p in (s_x, s_w, s_b)]
    teacher = t_x.double() @ t_w.double().T + t_b.double()
    with llmkernels.use_backend("reference"):
        expected = llmkernels.distillation_loss(ref[0] @ ref[1].T + ref[2], teacher, target, reduction=reduction, **options)
    assert_close_scaled(loss.float(), expected, torch.float32 if dtype == torch.float32 else dtype)
    upstream = torch.randn_like(expected)
    grads = torch.autograd.grad(loss, leaves, upstream.to(loss.dtype))
    expected_grads = torch.autograd.grad(expected, ref, upstream)
    for got, want in zip(grads, expected_grads):
        # low precision: the logits and the per-row gradients round to bf16 before the GEMMs
        assert_close_scaled(got.float(), want, torch.float32 if dtype == torch.float32 else dtype)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_linear_topk_matches_topk_on_full_logits(backend, reduction):
    _present(backend, "linear_topk_distillation_loss")
    s_x, s_w, s_b, t_x, t_w, t_b, target = _problem(19, 16, 24, 40, 40)
    ids, logprobs = llmkernels.linear_topk_logprobs(t_x, t_w, 7, bias=t_b, temperature=2.0, chunk_size=4)
    full_ids, full_logprobs = llmkernels.topk_logprobs(t_x @ t_w.T + t_b, 7, temperature=2.0)
    assert torch.equal(ids, full_ids)
    torch.testing.assert_close(logprobs, full_logprobs)
    leaves = [p.clone().requires_grad_(True) for p in (s_x, s_w, s_b)]
    options = dict(temperature=2.0, beta=0.5, hard_weight=0.2, reduction=reduction)
    with llmkernels.use_backend(backend):
        loss = llmkernels.linear_topk_distillation_loss(
            leaves[0], leaves[1], ids, logprobs, target, student_bias=leaves[2], chunk_size=6, **options
        )
    ref = [p.detach().double().requires_grad_(True) for p in (s_x, s_w, s_b)]
    expected = llmkernels.topk_distillation_loss(ref[0] @ ref[1].T + ref[2], ids, logprobs, target, **options)
    assert_close_scaled(loss, expected, torch.float32)
    upstream = torch.randn_like(expected)
    for got, want in zip(torch.autograd.grad(loss, leaves, upstream.float()), torch.autograd.grad(expected, ref, upstream)):
        assert_close_scaled(got, want, torch.float32)


def test_teacher_gets_no_gradient_and_leading_dims():
    s_x, s_w, _, t_x, t_w, _, target = _problem(12, 8, 8, 20, 20, bias=False)
    t_w.requires_grad_(True)
    s_w.requires_grad_(True)
    loss = llmkernels.linear_distillation_loss(s_x.reshape(3, 4, 8), s_w, t_x.reshape(3, 4, 8), t_w, target.reshape(3, 4),
                                               reduction="none")
    assert loss.shape == (3, 4)
    loss.sum().backward()
    assert t_w.grad is None and s_w.grad is not None


def test_modules_match_torch():
    s_x, s_w, s_b, t_x, t_w, t_b, target = _problem(10, 8, 12, 30, 30)
    fused = llmkernels.nn.LinearDistillationLoss(temperature=2.0, beta=0.4, hard_weight=0.1, chunk_size=3)
    plain = llmkernels.nn.LinearDistillationLoss(temperature=2.0, beta=0.4, hard_weight=0.1, ops="torch")
    args = (s_x, s_w, t_x, t_w, target, s_b, t_b)
    torch.testing.assert_close(fused(*args), plain(*args))
    ids, logprobs = llmkernels.linear_topk_logprobs(t_x, t_w, 5, bias=t_b)
    topk = llmkernels.nn.LinearTopKDistillationLoss(beta=1.0)
    topk_plain = llmkernels.nn.LinearTopKDistillationLoss(beta=1.0, ops="torch")
    torch.testing.assert_close(topk(s_x, s_w, ids, logprobs, target, s_b), topk_plain(s_x, s_w, ids, logprobs, target, s_b))
    module = llmkernels.nn.TopKDistillationLoss(temperature=1.0)
    logits = s_x @ s_w.T
    torch.testing.assert_close(module(logits, ids, logprobs), llmkernels.nn.TopKDistillationLoss(ops="torch")(logits, ids, logprobs))


@pytest.mark.parametrize("compiler", ["aot_eager", "inductor"])
def test_opcheck_and_compile(compiler):
    s_x, s_w, s_b, t_x, t_w, t_b, target = _problem(9, 8, 12, 20, 18)
    ops = torch.ops.llmkernels
    s_w.requires_grad_(True)
    for reduction in ("mean", "none"):
        torch.library.opcheck(ops.linear_distillation_loss, (s_x, s_w, s_b, t_x, t_w, t_b, target, 2.0, 0.5, 0.2, -100, reduction, True, None, 4, True, True, "auto"))
    ids, logprobs = llmkernels.linear_topk_logprobs(t_x, t_w, 3)
    torch.library.opcheck(ops.linear_topk_logprobs, (t_x, t_w, t_b, 3, 1.0, None, 4, "auto"))
    torch.library.opcheck(ops.linear_topk_distillation_loss, (s_x, s_w, s_b, ids, logprobs, target, 2.0, 0.0, 0.0, -100, "sum", True, None, 4, True, True, "auto"))

    def step(x, w):
        return llmkernels.linear_distillation_loss(x * 1.5, w, t_x, t_w, target, temperature=2.0, beta=0.5, chunk_size=4) + \
            llmkernels.linear_topk_distillation_loss(x, w, ids, logprobs, target, chunk_size=4)

    leaf = s_w.detach().clone().requires_grad_(True)
    loss = torch.compile(step, fullgraph=True, backend=compiler)(s_x, leaf)
    (grad,) = torch.autograd.grad(loss, leaf)
    eager = s_w.detach().clone().requires_grad_(True)
    expected = step(s_x, eager)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad, torch.autograd.grad(expected, eager)[0])


@pytest.mark.parametrize("change,match", [
    (dict(teacher_input=torch.randn(5, 12)), "teacher_input"),
    (dict(student_weight=torch.randn(20, 9)), "student_weight"),
    (dict(teacher_weight=torch.randn(18, 12, dtype=torch.float64)), "teacher_weight"),
    (dict(accum_dtype=torch.float16), "accum_dtype"),
    (dict(chunk_size=0), "chunk_size"),
    (dict(temperature=0.0), "temperature"),
])
def test_bad_inputs(change, match):
    s_x, s_w, _, t_x, t_w, _, target = _problem(9, 8, 12, 20, 18, bias=False)
    args = dict(student_input=s_x, student_weight=s_w, teacher_input=t_x, teacher_weight=t_w, target=target)
    args.update(change)
    with pytest.raises(ValueError, match=match):
        llmkernels.linear_distillation_loss(**args)
