"""tools/triton_check.py (`make cuda-check`): its rules on made-up results, the case registry, and
one real compile of a deliberately oversized attention tile that must fail the check."""

from __future__ import annotations

import importlib
import importlib.util
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from llmkernels.ops.common.triton_cases import FAMILIES, switch_sets

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


gr = _tool("gpu_resources")


def _row(config, spill=0, shared=1024, arch=90, choice="fwd D=64 bf16 -", ok=True, hot=False):
    res = gr.Resources(ok=ok, error="" if ok else "boom", registers=128, spill_stores=spill,
                       spill_loads=spill, shared=shared, threads=128)
    return gr.Row("triton", "attention/fwd", "bf16", config, "-", arch, res, choice, hot)


def test_a_launcher_choice_with_a_spill_free_candidate_must_not_offer_a_spilling_one():
    failures, warnings = gr.evaluate([_row("a"), _row("b", spill=8)])
    assert len(failures) == 1 and "launcher may pick a spilling tile" in failures[0] and "b spill" in failures[0]
    assert len(warnings) == 1 and "spills 8/8" in warnings[0]


def test_spills_without_a_spill_free_alternative_only_warn_and_hot_ones_are_marked():
    failures, warnings = gr.evaluate([_row("a", spill=4, hot=True), _row("b", spill=8, hot=True)])
    assert failures == []
    assert len(warnings) == 2 and all("HOT PATH" in w for w in warnings)


def test_shared_memory_is_held_to_each_cards_limit():
    kb = 1024
    rows = [_row("a", shared=200 * kb, arch=80, choice=""), _row("a", shared=200 * kb, arch=90, choice=""),
            _row("b", shared=230 * kb, arch=90, choice="")]
    failures, _ = gr.evaluate(rows)
    assert len(failures) == 2
    assert "sm_80" in failures[0] and "163 KB" in failures[0]
    assert "sm_90a" in failures[1] and "227 KB" in failures[1]


def test_a_config_that_does_not_compile_fails():
    failures, _ = gr.evaluate([_row("a", ok=False)])
    assert len(failures) == 1 and "does not compile" in failures[0] and "boom" in failures[0]


def test_ptxas_reports_are_read():
    log = textwrap.dedent("""\
        ptxas info    : 0 bytes gmem
        ptxas info    : Compiling entry function '_Z6kernelPf' for 'sm_80'
        ptxas info    : Function properties for _Z6kernelPf
            8 bytes stack frame, 12 bytes spill stores, 16 bytes spill loads
        ptxas info    : Used 255 registers, used 1 barriers, 2048 bytes smem, 380 bytes cmem[0]
        ptxas info    : Compiling entry function '_Z6kernelPf' for 'sm_90a'
        ptxas info    : Function properties for _Z6kernelPf
            0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
        ptxas info    : Used 40 registers, used 0 barriers, 380 bytes cmem[0]
        """)
    found = gr.parse_ptxas(log)
    assert found[("_Z6kernelPf", "sm_80")] == dict(registers=255, spill_stores=12, spill_loads=16, stack=8, smem=2048)
    assert found[("_Z6kernelPf", "sm_90a")] == dict(registers=40, spill_stores=0, spill_loads=0, stack=0, smem=0)


def test_cuda_dynamic_shared_memory_is_added_and_held_to_the_limit():
    log = textwrap.dedent("""\
        ptxas info    : Compiling entry function '_Z6kernelPf' for 'sm_80'
        ptxas info    : Function properties for _Z6kernelPf
            0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
        ptxas info    : Used 64 registers, used 1 barriers, 1024 bytes smem, 380 bytes cmem[0]
        """)
    name = gr.short_cuda_name(gr.demangle(["_Z6kernelPf"])["_Z6kernelPf"]).partition("<")[0]
    sizes = gr.parse_dynamic_smem(f"{name} - {170 * 1024}\nother_kernel fp32, 64 4096\n")
    assert sizes == {(name, "-"): 170 * 1024, ("other_kernel", "fp32, 64"): 4096}
    (row,) = gr.cuda_rows("x.cu", log, sizes)
    assert row.res.shared == 1024 + 170 * 1024 and row.config == "static + dynamic smem"
    failures, _ = gr.evaluate([row])
    assert len(failures) == 1 and "163 KB" in failures[0]
    (plain,) = gr.cuda_rows("x.cu", log)
    assert plain.res.shared == 1024 and plain.config == "static smem" and gr.evaluate([plain])[0] == []


def test_switch_sets_cover_each_switch_alone_and_all_together_once():
    sets = switch_sets(("A", "B"), ({"A": True},))
    assert sets == [{"A": False, "B": False}, {"A": True, "B": False}, {"A": False, "B": True}, {"A": True, "B": True}]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_registered_family_has_cases_for_both_targets(family):
    module = importlib.import_module(f"llmkernels.ops.{family}.triton_cases")
    for capability in (80, 90):
        cases = list(module.cases(capability))
        assert cases, f"{family} yields no cases for sm_{capability}"
        for case in cases:
            kernel_module = importlib.import_module(case.module)
            sig = case.signature(getattr(kernel_module, case.kernel).arg_names)
            missing = [n for n, v in case.constexprs if n not in sig]
            assert not missing, f"{case.kernel} has no argument {missing}"


def test_attention_cases_are_the_launchers_candidates():
    from llmkernels.ops.attention import triton_cases, triton_kernels
    from llmkernels.ops.attention.triton_launch import candidate_tiles

    fwd = [c for c in triton_cases.cases(90) if c.kernel == "_attn_fwd_kernel"]
    for d in (64, 128, 256):  # 16 and 32 compile their first candidate (see triton_cases)
        got = {(k["BLOCK_M"], k["BLOCK_N"], c.num_warps, c.num_stages)
               for c in fwd for k in [dict(c.constexprs)] if k["BLOCK_D"] == d and c.dtype == "bf16"}
        assert got == set(candidate_tiles(triton_kernels._FWD_TILES, d, "16bit", 90))


def _triton_backend_reason() -> str | None:
    try:
        import triton  # noqa: F401
        from triton.backends.nvidia.compiler import get_ptxas
    except ImportError as e:
        return f"triton's CUDA backend is not importable: {e}"
    if not os.path.exists(get_ptxas(90).path):
        return "triton ships no ptxas here"
    return None


_OVERSIZED = '''
import dataclasses

from llmkernels.ops.attention import triton_cases


def cases(capability):
    """The forward's first bf16 head-dim-128 candidate with BLOCK_N=256 and five stages: K and V
    tiles of 64 KB each per stage, far past any card's shared memory."""
    for case in triton_cases.cases(capability):
        consts = dict(case.constexprs)
        if case.kernel == "_attn_fwd_kernel" and case.dtype == "bf16" and consts["BLOCK_D"] == 128:
            consts.update(BLOCK_M=64, BLOCK_N=256)
            yield dataclasses.replace(case, constexprs=tuple(consts.items()), num_warps=4, num_stages=5,
                                      choice="")
            return
'''


@pytest.mark.timeout(300)
def test_an_oversized_tile_fails_the_check(tmp_path):
    reason = _triton_backend_reason()
    if reason:
        pytest.skip(reason)
    (tmp_path / "oversized").mkdir()
    (tmp_path / "oversized" / "__init__.py").write_text("")
    (tmp_path / "oversized" / "cases.py").write_text(_OVERSIZED)  # a dotted name: a case module
    table = tmp_path / "table.md"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]), "TRITON_INTERPRET": "0"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "triton_check.py"), "--families", "oversized.cases",
         "--archs", "90", "--no-cache", "--jobs", "1", "--table", str(table)],
        capture_output=True, text=True, env=env, timeout=280,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "FAIL shared memory" in out and "> 227 KB per block" in out, out
    assert "_attn_fwd_kernel" in table.read_text() and "FAIL shared memory" in table.read_text()
