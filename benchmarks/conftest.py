"""Benchmarks print their comparison table at the end of the run (pytest captures output)."""

import os

os.environ.setdefault("TRITON_INTERPRET", "0")

from benchmarks.common import RESULTS, format_table, write_results  # noqa: E402


def pytest_terminal_summary(terminalreporter):
    if RESULTS:
        terminalreporter.write_line(format_table())
        write_results()
