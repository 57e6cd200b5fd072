"""The documentation runs as written: every ```python block of README.md and docs/*.md is run, on
its own, in a fresh namespace (a block defines every tensor it uses), so a snippet that stops
working fails the build."""

import pathlib
import re

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def _blocks():
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 2  # the block's first line of code
            name = f"{page.relative_to(ROOT)}:{line}"
            found.append(pytest.param(name, match.group(1), id=name))
    return found


BLOCKS = _blocks()


def test_the_readme_has_python_blocks():
    assert any(name.startswith("README.md:") for name, _ in (p.values for p in BLOCKS))


@pytest.mark.parametrize("name,source", BLOCKS)
def test_block_runs_as_written(name, source, capsys):
    code = compile(source, name, "exec")  # tracebacks point at README.md:<line>
    torch.manual_seed(0)
    exec(code, {"__name__": "__readme__"})
