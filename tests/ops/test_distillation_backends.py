"""Every distillation backend against the reference, forward and backward: every beta, temperature,
hard weight, ignore_index, different widths, odd shapes, fp16/bf16 logits with float32 math."""

import pytest
import torch

import llmkernels
from tests.helpers import assert_close_scaled, backend_cases, skip_unless_present

OPTIONS = [
    dict(beta=0.0, temperature=1.0),
    dict(beta=0.0, temperature=2.0, hard_weight=0.3),
    dict(beta=1.0, temperature=0.5, hard_weight=0.5),
    dict(beta=0.5, temperature=2.0, softcap=8.0),
    dict(beta=0.1, temperature=3.0, hard_weight=1.0, scale_by_temperature=False),
]
SHAPES = [(1, 7, 7), (13, 127, 100), (7, 1000, 1003), (3, 300, 300)]


def _problem(rows, v_s, v_t, dtype):
    student = (torch.randn(rows, v_s) * 3).to(dtype)
    teacher = (torch.randn(rows, v_t) * 3).to(dtype)
    target = torch.randint(0, v_s, (rows,))
    target[torch.rand(rows) < 0.25] = -100
    return student, teacher, target


def _run(backend, fn, student, upstream):
    leaf = student.clone().requires_grad_(True)
    with llmkernels.use_backend(backend):
        loss = fn(leaf)
    (grad,) = torch.autograd.grad(loss, leaf, upstream.to(loss.dtype))
    return loss, grad


@pytest.mark.parametrize("device,backend,dtype", backend_cases("distillation_loss"))
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}{v}" for k, v in o.items()))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_backend_matches_reference(device, backend, dtype, options, shape, reduction):
    skip_unless_present("distillation_loss", device, backend, dtype)
    if backend == "triton" and shape[1] > 200:
        pytest.skip("the interpreter runs small shapes")
    student, teacher, target = _problem(*shape, dtype)
    student, teacher, target = student.to(device), teacher.to(device), target.to(device)

    def fn(s):
        return llmkernels.distillation_loss(s, teacher, target, reduction=reduction, **options)

    upstream = torch.randn(shape[0] if reduction == "none" else (), device=device)
    loss, grad = _run(backend, fn, student, upstream)
    # The spec: the reference on the same (rounded) inputs, in float64.
    expected, expected_grad = _run("reference", fn, student.double(), upstream)
    assert_close_scaled(loss.float(), expected, torch.float32 if dtype == torch.float32 else dtype)
    assert_close_scaled(grad, expected_grad, dtype)


@pytest.mark.parametrize("backend", ["reference", "cpp", "triton"])
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("temperature", [0.05, 1.0, 4.0])
def test_identical_models_zero_on_every_backend(backend, beta, temperature):
    if backend != "reference":
        skip_unless_present("distillation_loss", "cpu", backend, torch.float32)
    logits = torch.randn(5, 300) * 4
    loss, grad = _run(backend, lambda s: llmkernels.distillation_loss(s, logits, temperature=temperature, beta=beta),
                      logits, torch.tensor(1.0))
    assert abs(float(loss)) < 1e-5 and float(grad.abs().max()) < 1e-6


@pytest.mark.parametrize("backend", ["cpp", "triton"])
@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0])
def test_masked_vocabulary_matches_reference(backend, beta):
    """Logits of -inf (a masked vocabulary entry) in both models, at shared and separate columns,
    where the divergence stays finite: a probability of 0 adds nothing (0 log 0 = 0), never NaN."""
    skip_unless_present("distillation_loss", "cpu", backend, torch.float32)
    student, teacher, target = _problem(6, 40, 40, torch.float32)
    student[:, [3, 17]] = float("-inf")   # masked in both
    teacher[:, 3] = float("-inf")
    teacher[:, 17] = float("-inf")
    if beta == 0.0:
        teacher[:, 25] = float("-inf")    # the teacher alone: forward KL stays finite
    elif beta == 1.0:
        student[:, 25] = float("-inf")    # the student alone: reverse KL stays finite
    else:
        student[:, 25] = float("-inf")    # either alone: the mixture keeps the JSD finite
        teacher[:, 30] = float("-inf")
    target[target == 3] = 0
    target[(target == 17) | (target == 25)] = 1

    def fn(s):
        return llmkernels.distillation_loss(s, teacher, target, temperature=2.0, beta=beta, hard_weight=0.2)

    loss, grad = _run(backend, fn, student, torch.tensor(1.0))
    expected, expected_grad = _run("reference", fn, student.double(), torch.tensor(1.0))
    assert torch.isfinite(expected) and torch.isfinite(expected_grad).all()
    assert_close_scaled(loss.float(), expected, torch.float32)
    assert_close_scaled(grad, expected_grad, torch.float32)


@pytest.mark.parametrize("backend", ["reference", "cpp", "triton"])
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_extreme_logits_finite_on_every_backend(backend, beta):
    if backend != "reference":
        skip_unless_present("distillation_loss", "cpu", backend, torch.float32)
    student = torch.full((4, 100), -1e4)
    student[:, ::3] = 1e4
    teacher = torch.flip(student, (-1,))
    target = torch.tensor([0, 5, -100, 63])
    for temperature in (1e-4, 1.0):
        loss, grad = _run(backend, lambda s: llmkernels.distillation_loss(
            s, teacher, target, temperature=temperature, beta=beta, hard_weight=0.5, softcap=None), student, torch.tensor(1.0))
        assert torch.isfinite(loss) and torch.isfinite(grad).all()


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_all_ignored_mean_is_zero(backend):
    if backend != "reference":
        skip_unless_present("distillation_loss", "cpu", backend, torch.float32)
    student, teacher, _ = _problem(4, 20, 20, torch.float32)
    target = torch.full((4,), -100)
    loss, grad = _run(backend, lambda s: llmkernels.distillation_loss(s, teacher, target, hard_weight=0.5), student, torch.tensor(1.0))
    assert float(loss) == 0.0 and float(grad.abs().max()) == 0.0


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_teacher_of_another_dtype_and_strided_rows(backend):
    if backend != "reference":
        skip_unless_present("distillation_loss", "cpu", backend, torch.float32)
    student, teacher, target = _problem(6, 40, 50, torch.float32)
    wide = torch.randn(6, 90)
    wide[:, :40] = student
    fn = lambda s: llmkernels.distillation_loss(s, teacher.bfloat16(), target, beta=0.3)  # noqa: E731
    loss, grad = _run(backend, lambda s: fn(s[:, :40]), wide, torch.tensor(1.0))
    expected, expected_grad = _run("reference", lambda s: llmkernels.distillation_loss(
        s[:, :40], teacher.bfloat16().double(), target, beta=0.3), wide.double(), torch.tensor(1.0))
    assert_close_scaled(loss, expected, torch.float32)
    assert_close_scaled(grad, expected_grad, torch.float32)


@pytest.mark.parametrize("device,backend,dtype", backend_cases("topk_distillation_loss"))
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}{v}" for k, v in o.items()))
@pytest.mark.parametrize("shape_k", [(1, 7, 7), (13, 127, 5), (7, 1000, 64), (3, 300, 1)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_topk_backend_matches_reference(device, backend, dtype, options, shape_k, reduction):
    skip_unless_present("topk_distillation_loss", device, backend, dtype)
    rows, vocab, k = shape_k
    student, teacher, target = _problem(rows, vocab, vocab, dtype)
    ids, logprobs = llmkernels.topk_logprobs(teacher.float(), k, temperature=options["temperature"])
    student, ids, logprobs, target = (t.to(device) for t in (student, ids, logprobs, target))

    def fn(s):
        return llmkernels.topk_distillation_loss(s, ids, logprobs, target, reduction=reduction, **options)

    upstream = torch.randn(rows if reduction == "none" else (), device=device)
    loss, grad = _run(backend, fn, student, upstream)
    expected, expected_grad = _run("reference", fn, student.double(), upstream)
    assert_close_scaled(loss.float(), expected, torch.float32 if dtype == torch.float32 else dtype)
    assert_close_scaled(grad, expected_grad, dtype)


@pytest.mark.parametrize("backend", ["reference", "cpp", "triton"])
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_topk_k_equal_to_vocab_matches_full_loss(backend, beta):
    if backend != "reference":
        skip_unless_present("topk_distillation_loss", "cpu", backend, torch.float32)
    student, teacher, target = _problem(6, 50, 50, torch.float32)
    ids, logprobs = llmkernels.topk_logprobs(teacher, 50, temperature=2.0)
    options = dict(temperature=2.0, beta=beta, hard_weight=0.3)
    loss, grad = _run(backend, lambda s: llmkernels.topk_distillation_loss(s, ids, logprobs, target, **options), student, torch.tensor(1.0))
    full, full_grad = _run("reference", lambda s: llmkernels.distillation_loss(s, teacher.double(), target, **options), student.double(), torch.tensor(1.0))
    assert_close_scaled(loss, full, torch.float32)
    assert_close_scaled(grad, full_grad, torch.float32)


def test_cpp_every_isa_level_gives_bitwise_the_same_result():
    from llmkernels import _native

    C = _native.extension()
    if C is None or "cpp" not in llmkernels.available_backends("cpu", "distillation_loss"):
        pytest.skip("llmkernels._C is not built with the distillation kernels")
    student, teacher, target = _problem(9, 333, 300, torch.float32)
    ids, logprobs = llmkernels.topk_logprobs(teacher, 17)
    results, previous = [], C.cpu_isa()
    try:
        for level in C.build_info()["cpu_isa_supported"]:
            C.set_cpu_isa(level)
            full = _run("cpp", lambda s: llmkernels.distillation_loss(s, teacher, target, beta=0.3, softcap=9.0,
                                                                      hard_weight=0.2), student, torch.tensor(1.0))
            topk = _run("cpp", lambda s: llmkernels.topk_distillation_loss(s, ids, logprobs, target, beta=0.0),
                        student, torch.tensor(1.0))
            results.append(torch.cat([t.flatten() for t in full + topk]))
    finally:
        C.set_cpu_isa(previous)
    for other in results[1:]:
        assert torch.equal(other, results[0])


def test_families_bind_their_entry_points():
    from llmkernels import _native
    from llmkernels.ops.distillation import rows

    families = ((rows.KERNELS, "distillation_rows"), (rows.TOPK_KERNELS, "topk_distillation_rows"),
                (rows.TOPK_LOGPROBS_KERNELS, "topk_logprobs"))
    for family, entry in families:
        assert callable(family.kernel("triton", entry))
        if _native.extension() is not None:
            assert family.kernel("cpp", entry) is getattr(_native.extension(), f"{entry}_cpu")
        assert family.cpp_probe("cpu")[0] == (_native.extension() is not None)
    for op in ("topk_distillation_loss", "topk_logprobs", "linear_topk_distillation_loss", "linear_topk_logprobs"):
        assert set(llmkernels.backends.implemented_backends(op)) == {"reference", "cpp", "triton", "cuda"}


def test_cpp_checks_its_arguments():
    if "cpp" not in llmkernels.available_backends("cpu", "distillation_loss"):
        pytest.skip("cpp not present")
    from llmkernels import _native

    C = _native.extension()
    student, teacher = torch.randn(3, 10), torch.randn(3, 10)
    soft, hard = torch.empty(3), torch.empty(3)
    with pytest.raises(ValueError, match="target"):
        C.distillation_rows_cpu(student, teacher, torch.tensor([0, 10, 1]), soft, hard, None, 1.0, 0.0, 0.0, -100, True, 0.0, 1.0)
    with pytest.raises(ValueError, match="teacher"):
        C.distillation_rows_cpu(student, teacher.double(), None, soft, hard, None, 1.0, 0.0, 0.0, -100, True, 0.0, 1.0)
    with pytest.raises(ValueError, match="teacher_ids"):
        C.topk_distillation_rows_cpu(student, torch.tensor([[0], [1], [10]]), torch.full((3, 1), -1.0), None, soft, hard,
                                     None, 1.0, 0.0, 0.0, -100, True, 0.0, 1.0)
