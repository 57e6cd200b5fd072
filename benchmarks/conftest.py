"""Benchmarks print their comparison table at the end of the run (pytest captures output) and
append their rows to benchmarks/results/<device>.csv."""

import os

os.environ.setdefault("TRITON_INTERPRET", "0")

from benchmarks import common  # noqa: E402


def pytest_terminal_summary(terminalreporter):
    if common.LINES:
        terminalreporter.write_line(common.format_table())
    path = common.finish()
    if path:
        terminalreporter.write_line(f"rows appended to {path}")
