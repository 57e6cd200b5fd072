"""Hypothesis profiles and the count of examples each property test ran.

``LLMKERNELS_HYPOTHESIS_PROFILE`` picks the profile: ``ci`` (default: a few examples a test, so the
suite fits CI's budget) or ``long`` (``make fuzz``; ``LLMKERNELS_HYPOTHESIS_EXAMPLES``
examples a test, 400 by default). Without hypothesis installed (tools/setup_env.sh
installs it) each test module skips, saying so."""

import os

from tests.property.counts import EXAMPLES

PROFILE_ENV = "LLMKERNELS_HYPOTHESIS_PROFILE"
PROFILE = os.environ.get(PROFILE_ENV, "ci")

try:
    from hypothesis import HealthCheck, settings
except ImportError:
    settings = None
else:
    _COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                         HealthCheck.function_scoped_fixture])
    settings.register_profile("ci", max_examples=6, database=None, **_COMMON)
    settings.register_profile("long", max_examples=int(os.environ.get("LLMKERNELS_HYPOTHESIS_EXAMPLES", 400)), **_COMMON)
    settings.load_profile(PROFILE)


def pytest_terminal_summary(terminalreporter):
    if not EXAMPLES:
        return
    terminalreporter.section(f"hypothesis examples (profile {PROFILE!r})")
    for test, count in sorted(EXAMPLES.items()):
        terminalreporter.write_line(f"{count:6d}  {test}")
    terminalreporter.write_line(f"{sum(EXAMPLES.values()):6d}  in all, over {len(EXAMPLES)} tests")
