"""Ops called from several Python threads at once give the results they give serially, each thread
on the backend of its own `use_backend` block (the requested-backend stack is per thread: a block
in one thread used to change, and on exit pop, another thread's backend)."""

import threading

import pytest
import torch

import llmkernels
from llmkernels import backends, tour

THREADS, ROUNDS = 4, 3


def _cases():
    torch.manual_seed(0)
    return tour.cases("cpu", seq=48, vocab=300)


def _backends(op):
    return [b for b in ("cpp", "reference") if b in llmkernels.available_backends("cpu", op)]


def test_threads_give_the_serial_results_on_their_own_backends():
    cases = _cases()
    tasks = [(op, backend) for op in backends.registered_ops() for backend in _backends(op)]
    serial = {}
    for op, backend in tasks:
        with llmkernels.use_backend(backend):
            serial[op, backend] = cases[op]()
    failures, start = [], threading.Barrier(THREADS)
    # Each thread its own copy of the inputs (the same seed, the same values): threads whose graphs
    # share a leaf can deadlock inside torch 2.13 itself (one thread holds the GIL in an autograd
    # Function's apply and waits for the leaf's autograd lock, which another holds while it waits
    # for the GIL to create the leaf's grad accumulator), whatever the ops.
    own_cases = [_cases() for _ in range(THREADS)]

    def worker(index):
        cases = own_cases[index]
        try:
            start.wait()
            for round_ in range(ROUNDS):
                # Each thread walks the tasks from its own offset, so different threads hold
                # blocks of different backends at the same moment.
                for op, backend in tasks[index:] + tasks[:index]:
                    with llmkernels.use_backend(backend):
                        result = cases[op]()
                        still = backends.requested_backend()
                    if still != backend or not torch.equal(result, serial[op, backend]):
                        failures.append(f"thread {index} round {round_}: {op} on {backend} (saw {still})")
        except Exception as error:  # noqa: BLE001  (reported below, with the thread)
            failures.append(f"thread {index}: {type(error).__name__}: {error}")

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in workers), "a thread hung"
    assert not failures, "\n".join(failures[:10])
    assert backends.requested_backend() == "auto" or backends.requested_origin() != "use_backend"


@pytest.mark.skipif("cpp" not in llmkernels.available_backends("cpu", "attention"), reason="cpp not built")
def test_a_block_in_one_thread_does_not_leak_into_another():
    seen, entered, release = [], threading.Event(), threading.Event()

    def holder():
        with llmkernels.use_backend("reference"):
            entered.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    entered.wait(30)
    try:
        with llmkernels.use_backend("cpp"):
            seen.append(backends.requested_backend())
        seen.append(backends.requested_origin())
    finally:
        release.set()
        thread.join(30)
    assert seen == ["cpp", "default" if not __import__("os").environ.get("LLMKERNELS_BACKEND") else "LLMKERNELS_BACKEND"]


@pytest.mark.skipif("cpp" not in llmkernels.available_backends("cpu", "attention"), reason="cpp not built")
def test_a_block_around_a_compiled_function_is_honoured():
    # The per-thread stack is a threading.local, which dynamo reads and guards on: switching the
    # block's backend recompiles rather than reusing the other backend's graph.
    q = torch.randn(1, 2, 33, 16)
    compiled = torch.compile(lambda x: llmkernels.attention(x, x, x, causal=True), fullgraph=True, backend="aot_eager")
    for backend in ("cpp", "reference", "cpp"):
        with llmkernels.use_backend(backend):
            assert torch.equal(compiled(q), llmkernels.attention(q, q, q, causal=True)), backend
