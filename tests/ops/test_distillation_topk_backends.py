"""The top-k teacher's kernels against the reference: topk_logprobs on every backend (the chosen
logits, ties ranked by the smaller id, the log-probabilities), the top-k rows where the student's
tail is too small to take as a difference (Triton's exact tail pass), and the linear top-k ops on
every backend."""

import math

import pytest
import torch

import llmkernels
from llmkernels.ops.distillation import reference
from tests.helpers import assert_close, assert_close_scaled, backend_cases, skip_unless_present
from tests.ops.test_distillation_backends import _problem, _run

# (rows, vocabulary, k): k = V, k = 1, and k past one selection round of the interpreter (16)
SHAPES_K = [(1, 7, 7), (5, 300, 5), (3, 100, 40), (4, 50, 1), (2, 33, 17)]


def _topk(backend, logits, k, **options):
    with llmkernels.use_backend(backend):
        return llmkernels.topk_logprobs(logits, k, **options)


@pytest.mark.parametrize("device,backend,dtype", backend_cases("topk_logprobs"))
@pytest.mark.parametrize("shape_k", SHAPES_K, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("options", [dict(temperature=1.0), dict(temperature=0.5, softcap=3.0)], ids=["plain", "cap"])
def test_topk_logprobs_matches_reference(device, backend, dtype, shape_k, options):
    skip_unless_present("topk_logprobs", device, backend, dtype)
    rows, vocab, k = shape_k
    logits = (torch.randn(rows, vocab) * 3).to(dtype).to(device)
    ids, logprobs = _topk(backend, logits, k, **options)
    expected_ids, expected = _topk("reference", logits.double(), k, **options)
    assert ids.dtype == torch.int32 and logprobs.dtype == torch.float32 and ids.shape == (rows, k)
    # the chosen logits are the reference's (low precision rounds some to equal values: any of those)
    assert torch.equal(logits.gather(-1, ids.long()), logits.gather(-1, expected_ids.long()))
    assert_close(logprobs, expected, torch.float32)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_topk_logprobs_ranks_equal_logits_by_smaller_id(backend):
    skip_unless_present("topk_logprobs", "cpu", backend, torch.float32)
    logits = torch.randint(0, 4, (6, 90)).float()
    logits[:, ::7] = float("-inf")
    ids, _ = _topk(backend, logits, 37, temperature=0.7, softcap=5.0)
    expected = torch.sort(logits, dim=-1, descending=True, stable=True).indices[:, :37]
    assert torch.equal(ids.long(), expected)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_topk_logprobs_of_strided_and_empty_rows(backend):
    skip_unless_present("topk_logprobs", "cpu", backend, torch.float32)
    wide = torch.randn(5, 80)
    ids, logprobs = _topk(backend, wide[:, :61], 9, temperature=2.0)
    expected_ids, expected = _topk("reference", wide[:, :61].double(), 9, temperature=2.0)
    assert torch.equal(ids, expected_ids)
    assert_close(logprobs, expected, torch.float32)
    ids, logprobs = _topk(backend, torch.randn(0, 10), 3)
    assert ids.shape == logprobs.shape == (0, 3)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("softcap", [None, 40.0])
def test_topk_tiny_tail_matches_reference(backend, beta, softcap):
    """The teacher's ids hold all but ~1e-9 of the student's mass: the tail is not S - S_ids
    there (Triton takes its exact pass); the loss and gradient still match the reference. (The
    teacher keeps a real tail: one of ~1e-9 in float32 log-probabilities would be rounding.)"""
    skip_unless_present("topk_distillation_loss", "cpu", backend, torch.float32)
    student, teacher, target = _problem(5, 150, 150, torch.float32)
    student[:, :6] += 25.0
    ids = torch.arange(6).repeat(5, 1)
    logprobs = teacher.log_softmax(-1)[:, :6]

    def fn(s):
        return llmkernels.topk_distillation_loss(s, ids, logprobs, target, beta=beta, hard_weight=0.2, softcap=softcap,
                                                 reduction="none")

    upstream = torch.randn(5)
    loss, grad = _run(backend, fn, student, upstream)
    expected, expected_grad = _run("reference", fn, student.double(), upstream)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    assert_close_scaled(loss, expected, torch.float32)
    assert_close_scaled(grad, expected_grad, torch.float32)


@pytest.mark.parametrize("backend", ["reference", "cpp", "triton"])
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_a_teacher_whose_stored_mass_rounds_to_one_gives_finite_losses(backend, beta):
    """Top-k log-probabilities of a sharp teacher can sum to 1 or more in float32: its tail mass is
    then 2^-126, not 0, so even the reverse KL is finite (the student's tail pays for it), with
    every row (ignored ones too) finite, forward and backward."""
    if backend != "reference":
        skip_unless_present("topk_distillation_loss", "cpu", backend, torch.float32)
    student = torch.randn(4, 40) * 3
    ids = torch.arange(3).repeat(4, 1)
    logprobs = torch.tensor([[0.0, -30.0, -40.0]]).repeat(4, 1)  # mass >= 1 in any precision (float32 sums: exactly 1)
    logprobs[2, 1] = 0.0  # mass 2
    target = torch.tensor([1, -100, 5, 7])

    def fn(s):
        return llmkernels.topk_distillation_loss(s, ids, logprobs, target, beta=beta, hard_weight=0.3, reduction="none")

    upstream = torch.randn(4)
    loss, grad = _run(backend, fn, student, upstream)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    expected, expected_grad = _run("reference", fn, student.double(), upstream)
    assert_close_scaled(loss, expected, torch.float32)
    # Each gradient element is p_i (log q_b - log r_b - KL): a difference of log-ratios as large as
    # the tail's |log 2^-126| = 87.3, which float32 rounds to ~1e-5 whatever the order of operations
    # (over 400 draws the float32 reference reached 2.8e-5 of the float64 one, the cpp kernel
    # 1.8e-5): the table's rounding is relative to those terms, as for rms_norm's dx.
    assert_close_scaled(grad, expected_grad, torch.float32, terms=-math.log(reference.TEACHER_TAIL_FLOOR))
    if beta == 1.0:  # the student's tail mass is what the reverse KL charges: ~q_tail * 87
        assert loss[0] > 10.0


@pytest.mark.parametrize("backend", ["cpp", "triton"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_linear_topk_ops_on_every_backend(backend, reduction):
    """linear_topk_logprobs and linear_topk_distillation_loss run the backend's row kernels chunk
    by chunk: the same results as the reference on the full logits."""
    from tests.ops.test_distillation_linear import _problem as linear_problem

    skip_unless_present("linear_topk_distillation_loss", "cpu", backend, torch.float32)
    s_x, s_w, s_b, t_x, t_w, t_b, target = linear_problem(19, 16, 24, 40, 40)
    with llmkernels.use_backend(backend):
        ids, logprobs = llmkernels.linear_topk_logprobs(t_x, t_w, 7, bias=t_b, temperature=2.0, chunk_size=4)
    expected_ids, expected_logprobs = _topk("reference", (t_x @ t_w.T + t_b).double(), 7, temperature=2.0)
    assert torch.equal(ids, expected_ids)
    assert_close(logprobs, expected_logprobs, torch.float32)
    leaves = [p.clone().requires_grad_(True) for p in (s_x, s_w, s_b)]
    options = dict(temperature=2.0, beta=0.5, hard_weight=0.2, reduction=reduction, softcap=6.0)
    with llmkernels.use_backend(backend):
        loss = llmkernels.linear_topk_distillation_loss(leaves[0], leaves[1], ids, logprobs, target,
                                                        student_bias=leaves[2], chunk_size=6, **options)
    ref = [p.detach().double().requires_grad_(True) for p in (s_x, s_w, s_b)]
    with llmkernels.use_backend("reference"):
        expected = llmkernels.topk_distillation_loss(ref[0] @ ref[1].T + ref[2], ids, logprobs, target, **options)
    assert_close_scaled(loss, expected, torch.float32)
    upstream = torch.randn_like(expected)
    for got, want in zip(torch.autograd.grad(loss, leaves, upstream.float()), torch.autograd.grad(expected, ref, upstream)):
        assert_close_scaled(got, want, torch.float32)


def test_triton_rows_turn_a_row_with_a_bad_id_nan():
    """On a GPU ids are not range-checked on the host: the kernel reads nothing out of range and
    the row's parts and gradient are NaN (the CPU checks run before it; this calls it directly)."""
    skip_unless_present("topk_distillation_loss", "cpu", "triton", torch.float32)
    from llmkernels.ops.distillation import triton_topk

    student, ids, logprobs = torch.randn(3, 20), torch.tensor([[0, 1], [2, 30], [4, 5]]), torch.full((3, 2), -1.0)
    soft, hard, grad = torch.empty(3), torch.empty(3), torch.empty(3, 20)
    triton_topk.topk_distillation_rows(student, ids, logprobs, torch.tensor([3, 4, 5]), soft, hard, grad, 1.0, 0.0,
                                       0.5, -100, True, 0.0, 1.0)
    assert soft[1].isnan() and hard[1].isnan() and grad[1].isnan().all()
    assert torch.isfinite(soft[[0, 2]]).all() and torch.isfinite(grad[[0, 2]]).all()


def test_a_stored_teacher_and_frozen_student_parts_get_no_gradient():
    """The stored teacher is a constant: log-probabilities that require grad get None, not zeros;
    a frozen student weight gets None too while the trainable input gets the reference's gradient."""
    from tests.ops.test_distillation_linear import _problem as linear_problem

    s_x, s_w, _, t_x, t_w, _, target = linear_problem(10, 8, 8, 30, 30, bias=False)
    ids, logprobs = llmkernels.linear_topk_logprobs(t_x, t_w, 5)
    logprobs.requires_grad_(True)
    s_x.requires_grad_(True)
    loss = llmkernels.linear_topk_distillation_loss(s_x, s_w, ids, logprobs, target, hard_weight=0.5)
    loss.backward()
    assert logprobs.grad is None and s_w.grad is None and s_x.grad is not None
    leaf = s_x.detach().double().requires_grad_(True)
    with llmkernels.use_backend("reference"):
        expected = llmkernels.topk_distillation_loss(leaf @ s_w.double().T, ids, logprobs.detach(), target, hard_weight=0.5)
    expected.backward()
    assert_close_scaled(s_x.grad, leaf.grad, torch.float32)
    logits = (s_x @ s_w.T).detach().requires_grad_(True)
    llmkernels.topk_distillation_loss(logits, ids, logprobs, target, hard_weight=0.5).backward()
    assert logprobs.grad is None and logits.grad is not None
