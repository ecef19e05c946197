"""The suite's own guards fail a test that leaves an exception for nobody (see tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = (Path(__file__).parent.parent / "conftest.py").read_text()

PROVOCATIONS = """
import asyncio, gc

class Bad:
    def __del__(self):
        raise RuntimeError("boom in __del__")

async def test_task_exception_nobody_retrieves():
    async def fail():
        raise RuntimeError("nobody looks at me")
    task = asyncio.ensure_future(fail())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    del task

async def test_exception_in_a_callback():
    asyncio.get_running_loop().call_soon(lambda: 1 / 0)
    await asyncio.sleep(0.01)

def test_unraisable():
    Bad()
    gc.collect()

async def test_retrieved_is_fine():
    async def fail():
        raise RuntimeError("looked at")
    task = asyncio.ensure_future(fail())
    await asyncio.gather(task, return_exceptions=True)
"""


@pytest.mark.asyncio_reports_expected  # the inner run's reports reach this process's handler too
def test_unretrieved_exceptions_fail_the_test_that_left_them(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_provocations=PROVOCATIONS)
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\n"
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rA")
    # The two asyncio reports fail their tests' teardown; the unraisable one fails the test itself.
    result.assert_outcomes(passed=3, errors=2, failed=1)
    result.stdout.fnmatch_lines_random(
        [
            "ERROR*test_task_exception_nobody_retrieves*",
            "ERROR*test_exception_in_a_callback*",
            "FAILED*test_unraisable*",
            "PASSED*test_retrieved_is_fine*",
        ]
    )
    text = result.stdout.str()
    assert "nobody looks at me" in text and "ZeroDivisionError" in text and "boom in __del__" in text
