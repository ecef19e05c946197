"""Shared test settings: hypothesis profiles (CI runs the `ci` profile, machine speed never matters), and
no exception left for nobody.

asyncio reports a task whose exception nobody retrieved, an exception raised in a callback, and a task
destroyed while pending through its default exception handler, which logs to the ``asyncio`` logger:
every such report during a test fails that test. (``sys.unraisablehook`` reports, an exception in a
``__del__`` say, already fail it: pytest turns them into warnings, and ``filterwarnings = error`` into
failures.)
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# bench/served.py is the one home of what tests and benchmarks share: `talkstream serve` in its own process,
# free ports, WAV files. Tests import it as `served`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

settings.register_profile(
    "ci",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("dev", deadline=None, max_examples=50)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


class AsyncioReports(logging.Handler):
    """Keeps what asyncio's default exception handler logged, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.setFormatter(logging.Formatter("%(message)s"))
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.reports.append(self.format(record))


ASYNCIO_REPORTS = AsyncioReports()
logging.getLogger("asyncio").addHandler(ASYNCIO_REPORTS)


@pytest.fixture(autouse=True)
def _no_exception_left_for_nobody(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if asyncio reported an unretrieved exception (or a callback's) while it ran.

    A task's unretrieved exception is reported when the task is collected, so collect before looking: the
    young generations only (a full collection after every test would cost the suite a minute); what only
    a full collection finds is reported at the end of the session, which then fails. Tests that provoke
    such reports on purpose mark themselves `asyncio_reports_expected` and read `ASYNCIO_REPORTS` themselves.
    """
    start = len(ASYNCIO_REPORTS.reports)
    yield
    gc.collect(1)
    reports = ASYNCIO_REPORTS.reports[start:]
    del ASYNCIO_REPORTS.reports[start:]
    if reports and request.node.get_closest_marker("asyncio_reports_expected") is None:
        pytest.fail("asyncio reported exceptions nobody retrieved:\n\n" + "\n\n".join(reports), pytrace=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Collect everything once more; a report now belongs to no test, so the session fails."""
    gc.collect()
    if ASYNCIO_REPORTS.reports:
        print("\n\nasyncio reported exceptions nobody retrieved:\n\n" + "\n\n".join(ASYNCIO_REPORTS.reports))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
