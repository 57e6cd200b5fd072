"""docs/errors.md is kept honest: every bad call it lists raises the error type it names, with the
message fragment it gives, and every public function has a table there."""

import builtins
import re
from pathlib import Path

import pytest
import torch

import llmkernels

TABLE = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
ROW = re.compile(r"^\| (?P<checked>[^|]+?) \| `(?P<call>[^`]+)` \| `(?P<error>\w+)` \| `(?P<fragment>[^`]+)` \|$")
# Public names that are not functions taking arguments to check.
NOT_CHECKED = {"BACKEND_NAMES", "__version__", "nn", "info"}


def _rows():
    rows, function = [], None
    for line in TABLE.read_text().splitlines():
        heading = re.match(r"^## `(\w+)`$", line)
        if heading:
            function = heading.group(1)
        match = ROW.match(line)
        if match:
            rows.append(pytest.param(function, *match.group("call", "error", "fragment"), id=f"{function}: {match['checked']}"))
    return rows


ROWS = _rows()


def _namespace():
    return {"lk": llmkernels, "torch": torch, "t": lambda *shape: torch.randn(*shape), "i": lambda *values: torch.tensor(list(values))}


def test_the_table_parses_and_covers_every_public_function():
    assert len(ROWS) >= 60
    covered = {row.values[0] for row in ROWS}
    public = set(llmkernels.__all__) - NOT_CHECKED
    assert public <= covered, f"no table in docs/errors.md for {sorted(public - covered)}"
    for function, call, _, _ in (row.values for row in ROWS):
        assert call.startswith(f"lk.{function}("), f"a row of `{function}` calls {call}"


@pytest.mark.parametrize("function,call,error,fragment", ROWS)
def test_each_listed_bad_call_raises_what_the_table_says(function, call, error, fragment):
    expected = getattr(builtins, error)
    with pytest.raises(Exception) as raised:
        eval(call, _namespace())  # noqa: S307  (the calls are this repository's own documentation)
    assert type(raised.value) is expected, f"{call} raised {type(raised.value).__name__}: {raised.value}"
    assert fragment in str(raised.value), f"{call}: {fragment!r} not in {str(raised.value)!r}"
