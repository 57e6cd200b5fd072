"""The op contract: backend selection, errors, logging, info(), backward on the forward's backend."""

import subprocess
import sys

import pytest
import torch

import llmkernels
from llmkernels import backends


def test_available_backends_per_op_and_device():
    present = llmkernels.available_backends("cpu")
    assert "reference" in present and "cuda" not in present
    for op in backends.registered_ops():
        assert set(llmkernels.available_backends("cpu", op)) <= set(present)
    assert llmkernels.available_backends(torch.device("cpu"), "apply_rotary")[0] == "reference"
    with pytest.raises(ValueError, match="op must be one of"):
        llmkernels.available_backends("cpu", "no_such_op")


def test_unknown_backend_name_is_rejected():
    with pytest.raises(ValueError, match="backend must be one of"):
        with llmkernels.use_backend("fastest"):
            pass


def test_absent_backend_names_what_is_present():
    q = torch.randn(1, 1, 2, 4)
    cos, sin = llmkernels.rope_cache(2, 4)
    with pytest.raises(RuntimeError, match=r"backend 'cuda' does not run on cpu.*present: reference"):
        with llmkernels.use_backend("cuda"):
            llmkernels.apply_rotary(q, q, cos, sin)


def test_reference_serves_float64_and_auto_falls_back_to_it():
    q = torch.randn(1, 2, 3, 4, dtype=torch.float64)
    cos, sin = llmkernels.rope_cache(3, 4)
    assert backends.resolve("apply_rotary", q.device, torch.float64, "auto") == "reference"
    out, _ = llmkernels.apply_rotary(q, q, cos, sin)
    assert out.dtype == torch.float64
    if "cpp" in llmkernels.available_backends("cpu", "apply_rotary"):
        with pytest.raises(RuntimeError, match="does not support torch.float64"):
            with llmkernels.use_backend("cpp"):
                llmkernels.apply_rotary(q, q, cos, sin)


def test_auto_never_picks_the_interpreter():
    for op in backends.registered_ops():
        chosen = backends.resolve(op, torch.device("cpu"), torch.float32, "auto")
        assert chosen == ("cpp" if "cpp" in llmkernels.available_backends("cpu", op) else "reference")


def test_use_backend_nests_and_env_is_the_default(monkeypatch):
    monkeypatch.setenv("LLMKERNELS_BACKEND", "reference")
    assert backends.requested_backend() == "reference"
    with llmkernels.use_backend("auto"):
        assert backends.requested_backend() == "auto"
        with llmkernels.use_backend("reference"):
            assert backends.requested_backend() == "reference"
        assert backends.requested_backend() == "auto"
    monkeypatch.setenv("LLMKERNELS_BACKEND", "bogus")
    with pytest.raises(ValueError, match="bogus"):
        backends.requested_backend()


def test_backward_runs_on_the_forward_backend(monkeypatch):
    present = [b for b in llmkernels.available_backends("cpu", "apply_rotary") if b != "reference"]
    chosen_backend = present[0] if present else "reference"
    seen = []
    original = backends.resolve

    def spy(op, device, dtype, requested="auto"):
        seen.append(requested)
        return original(op, device, dtype, requested)

    monkeypatch.setattr(backends, "resolve", spy)
    q = torch.randn(1, 2, 3, 8, requires_grad=True)
    cos, sin = llmkernels.rope_cache(3, 8)
    with llmkernels.use_backend(chosen_backend):
        out, _ = llmkernels.apply_rotary(q, q.detach(), cos, sin)
    with llmkernels.use_backend("reference"):  # the block has ended; another one is active
        out.sum().backward()
    assert seen == [chosen_backend, chosen_backend]


def test_log_names_the_backend_that_ran():
    code = (
        "import torch, llmkernels\n"
        "cos, sin = llmkernels.rope_cache(3, 4)\n"
        "llmkernels.apply_rotary(torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4), cos, sin)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**__import__("os").environ, "LLMKERNELS_LOG": "1"},
        check=True,
    )
    assert "llmkernels: apply_rotary ->" in result.stderr


def test_info_reports_build_and_choices(capsys):
    report = llmkernels.info()
    assert "apply_rotary" in capsys.readouterr().out
    assert report["version"] == llmkernels.__version__
    assert set(report["ops"]) == set(backends.registered_ops())
    assert report["ops"]["apply_rotary"]["cpu"]["float32"]["auto"] in ("cpp", "reference")
    if report["extension"]["built"]:
        assert {"compiler", "openmp", "cpu_isa_variants", "cuda_archs"} <= set(report["extension"])


@pytest.mark.parametrize("native", [True, False])
def test_info_says_whether_torch_multiplies_bf16_natively_on_this_cpu(monkeypatch, native):
    from llmkernels import bf16_support, diagnostics

    monkeypatch.setattr(bf16_support, "cpu_bf16_matmul_is_native", lambda: native)
    report = llmkernels.info(print_report=False)
    assert report["cpu_bf16_matmul_native"] is native
    said = diagnostics.format_report(report)
    assert ("bf16 matrix multiply on this CPU: native" in said) is native
    assert ("train in float32 here" in said) is not native


def test_info_says_whose_gemms_the_linear_losses_run_on_this_cpu():
    from llmkernels import _native, diagnostics

    report = llmkernels.info(print_report=False)
    module = _native.extension()
    assert report["cpu_gemm_own"] is (module is not None and module.gemm_cpu_available())
    said = diagnostics.format_report(report)
    assert ("linear losses on this CPU (cpp backend): llmkernels' own (AVX2)" in said) is report["cpu_gemm_own"]


def test_bf16_warning_only_for_a_cpu_without_native_bf16(monkeypatch, recwarn):
    from llmkernels import bf16_support

    monkeypatch.setattr(bf16_support, "cpu_bf16_matmul_is_native", lambda: False)
    assert not bf16_support.warn_if_cpu_bf16_matmul_is_emulated("cuda", "bf16 autocast")
    assert len(recwarn) == 0
    with pytest.warns(RuntimeWarning, match="bf16 autocast: this CPU .* has no native bf16 matrix multiply"):
        assert bf16_support.warn_if_cpu_bf16_matmul_is_emulated("cpu", "bf16 autocast")
    monkeypatch.setattr(bf16_support, "cpu_bf16_matmul_is_native", lambda: True)
    assert not bf16_support.warn_if_cpu_bf16_matmul_is_emulated("cpu", "bf16 autocast")
    assert len(recwarn) == 0


def test_package_imports_and_works_without_the_extension():
    # Hide llmkernels._C: the package must still import and run on the reference backend.
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'llmkernels._C': raise ImportError('hidden for the test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import torch, llmkernels\n"
        # TRITON_INTERPRET is removed below, so Triton is absent too: reference is all there is.
        "present = llmkernels.available_backends('cpu', 'apply_rotary')\n"
        "assert present == ['reference'], present\n"
        "cos, sin = llmkernels.rope_cache(3, 4)\n"
        "print(llmkernels.rotary_embedding(torch.randn(1, 1, 3, 4), cos, sin).shape)\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "torch.Size([1, 1, 3, 4])" in result.stdout


def _families():
    from llmkernels.ops import attention, rotary, sinusoidal
    from llmkernels.ops.cross_entropy import rows

    return [attention.KERNELS, rotary.KERNELS, sinusoidal.KERNELS, rows.KERNELS]


@pytest.mark.parametrize("family", _families(), ids=lambda family: family.name)
def test_every_family_binds_its_entry_points(family):
    from llmkernels import _native

    for entry in family.entry_points:
        assert callable(family.kernel("triton", entry))
        if _native.extension() is not None:
            assert family.kernel("cpp", entry) is getattr(_native.extension(), f"{entry}_cpu")
    assert family.cpp_probe("cpu")[0] == (_native.extension() is not None)
    with pytest.raises(ValueError, match="has no kernel"):
        family.kernel("cpp", "no_such_kernel")


def test_probes_check_that_the_extension_holds_the_family():
    from llmkernels import _native
    from llmkernels.ops.common.registration import KernelFamily

    missing = KernelFamily("imaginary", ("rotary", "no_such_kernel"), "llmkernels.ops.rotary.triton_kernels")
    present, why = missing.cpp_probe("cpu")
    assert not present
    if _native.extension() is not None:
        assert why == "llmkernels._C was built without the imaginary kernels (no_such_kernel_cpu)"


def test_resolve_remembers_answers_not_errors_and_register_forgets_them():
    """resolve() keeps each (op, device, dtype, requested) answer (the per-call path), raises a
    missing backend afresh every time, and a newly registered implementation is seen at once."""
    cpu = torch.device("cpu")
    first = backends.resolve("rms_norm", cpu, torch.float32, "auto")
    assert backends.resolve("rms_norm", cpu, torch.float32, "auto") == first
    assert backends._resolved[("rms_norm", "cpu", torch.float32, "auto")] == first
    for _ in range(2):
        with pytest.raises(RuntimeError, match="cuda"):
            backends.resolve("rms_norm", cpu, torch.float32, "cuda")
    saved = dict(backends._registry["rms_norm"])
    try:
        backends.register("rms_norm", backends.Implementation("cuda", ("cpu",), (torch.float32,), lambda _: (True, "test")))
        assert not backends._resolved
        assert backends.resolve("rms_norm", cpu, torch.float32, "cuda") == "cuda"
    finally:
        backends._registry["rms_norm"] = saved
        backends._resolved.clear()
