"""The command line explains itself: help with defaults and choices, --version, the subcommand's
usage on a misspelled flag, and one line (no traceback) for each mistake a new user makes."""

import subprocess
import sys

import pytest
import torch

import llmkernels
from llmkernels import _triton, backends, cli, tour


def _one_line_error(capsys, argv, *fragments):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def _help(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["train", "demo", "sample", "distill", "finetune-classify"])
def test_every_flag_has_help_with_its_default(command):
    _, subparsers = cli.build_parser()
    for action in subparsers[command]._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{command} {action.option_strings} has no help"
        assert "default" in action.help or action.required, f"{command} {action.option_strings}: {action.help}"


def test_train_help_names_defaults_and_choices(capsys):
    out = " ".join(_help(capsys, "train").split())  # argparse wraps lines
    assert "--preset {nano,small,tiny}" in out and "one of nano, small, tiny" in out
    assert "(default: 200 for nano, 300 for tiny, 1000 for small)" in out  # --steps, read from the presets
    assert "one of llmkernels, torch" in out  # --ops
    assert "one of auto, reference, cpp, triton, cuda" in out  # --backend
    assert "one of rope, sinusoidal" in out  # --positional
    assert "(default: 0.1)" in out  # --min-lr-ratio, from TrainConfig


def test_sample_help_is_documented(capsys):
    out = " ".join(_help(capsys, "sample").split())
    assert "tokens to generate (default: 200)" in out
    assert "sampling temperature, 0 for greedy (default: 0.8)" in out
    assert "--run DIR" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"llmkernels {llmkernels.__version__}"


def test_misspelled_flag_prints_the_subcommands_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--setps", "5"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: llmkernels train"), err
    assert "unrecognized arguments: --setps 5 (did you mean --steps?)" in err


def test_sample_of_a_missing_run_says_it_does_not_exist(capsys, tmp_path):
    _one_line_error(capsys, ["sample", "--run", str(tmp_path / "nonexistent")], "does not exist")


@pytest.mark.parametrize("command", ["info", "train"])
def test_bogus_backend_env_is_one_line(capsys, monkeypatch, tmp_path, command):
    monkeypatch.setenv("LLMKERNELS_BACKEND", "bogus")
    argv = [command] + (["--out", str(tmp_path / "run"), "--quiet"] if command == "train" else [])
    _one_line_error(capsys, argv, "LLMKERNELS_BACKEND", "'bogus'")
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the cuda backend is present here")
def test_cuda_backend_env_on_a_cpu(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("LLMKERNELS_BACKEND", "cuda")
    _one_line_error(capsys, ["train", "--out", str(tmp_path / "run"), "--quiet"],
                    "backend 'cuda' (from LLMKERNELS_BACKEND) cannot run here: does not run on cpu",
                    "present on cpu: reference")
    assert not (tmp_path / "run").exists()
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "auto -> " not in out and "on cpu on cpu" not in out
    assert "requested backend: cuda (from LLMKERNELS_BACKEND); every op would raise" in out
    op_lines = [line for line in out.splitlines() if line.startswith("  ")]
    assert len(op_lines) == 2 * len(backends.registered_ops())  # float32 and bfloat16
    # The reason: the device (cuda does not run on a CPU), or the op (it has no cuda kernel at all).
    reasons = ("does not run on cpu", "is not implemented for this op")
    assert all("cuda -> would raise: " in line and any(r in line for r in reasons) for line in op_lines), out


def test_absent_backend_error_names_the_device_once():
    q = torch.randn(1, 1, 2, 4)
    with pytest.raises(RuntimeError) as error, llmkernels.use_backend("cuda"):
        llmkernels.attention(q, q, q)
    assert "does not run on cpu" in str(error.value) and "on cpu on cpu" not in str(error.value)


def test_missing_train_extra_is_one_line():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('safetensors', 'tokenizers'): raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from llmkernels import cli\n"
        "sys.exit(cli.main(['train', '--quiet']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "needs safetensors, tokenizers" in err and "pip install 'llmkernels[train]'" in err


def test_tour_covers_every_op_on_every_backend_and_says_triton_once(capsys, monkeypatch):
    monkeypatch.setattr(_triton, "interpreter_active", lambda: False)
    tour.run(small=True)
    out = capsys.readouterr().out
    assert out.count("TRITON_INTERPRET=1 set before import") == 1, out
    lines = out.splitlines()
    for op in backends.registered_ops():
        for backend in llmkernels.available_backends("cpu", op):
            assert sum(line.split()[:2] == [op, backend] for line in lines) == 1, (op, backend, out)
    monkeypatch.undo()  # the interpreter (tests set TRITON_INTERPRET=1): triton gets its line too
    tour.run(small=True)
    lines = capsys.readouterr().out.splitlines()
    for op in backends.registered_ops():
        for backend in llmkernels.available_backends("cpu", op):
            assert sum(line.split()[:2] == [op, backend] for line in lines) == 1, (op, backend)


def test_info_says_triton_once(capsys, monkeypatch):
    monkeypatch.setattr(_triton, "interpreter_active", lambda: False)
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.count("TRITON_INTERPRET=1 set before import") == 1, out
