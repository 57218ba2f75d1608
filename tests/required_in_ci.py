"""In CI nothing is skipped: with ``LSDR_REQUIRE_LEGACYPIPE=1`` a skip is a failure.

``make pytest`` builds the real legacypipe, installs rsync and then runs every test with
``LSDR_REQUIRE_LEGACYPIPE=1``.  A test that skipped there (missing test data, a build that is
not found, a ``pytest.skip`` anyone adds later) would pass CI without checking anything, so:

* :func:`unavailable` fails the test outright in CI and skips it elsewhere, with the reason;
* the hooks below (imported by ``conftest.py``) turn every other skip of a test, or of a
  module at collection, into a failure naming the reason.  Tests left out by ``-m`` or
  ``--deselect`` are deselected, not skipped: they make no report and are not counted.  An
  expected failure (``xfail``) is reported as such, not as a skip.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import NoReturn

import pytest

REQUIRE_ENV = "LSDR_REQUIRE_LEGACYPIPE"
"""Set to 1 by ``make pytest`` (CI): every test must run."""
LEGACYPIPE_TEST_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "legacypipe-test"
"""legacypipe's own test cases (real CCD cut-outs, calibs, survey-ccds tables, Gaia chunks)."""


def required() -> bool:
    """Whether this run is CI's (``LSDR_REQUIRE_LEGACYPIPE=1`` or ``CI=true``): no test may skip."""
    return os.environ.get(REQUIRE_ENV) == "1" or os.environ.get("CI", "").lower() == "true"


def unavailable(message: str) -> NoReturn:
    """Skip the calling test because ``message``; in CI fail it instead."""
    if required():
        pytest.fail(f"{message} ({REQUIRE_ENV}=1: this test must run)", pytrace=False)
    pytest.skip(message)


def legacypipe_test_case(case: str) -> Path:
    """The directory of one of legacypipe's test cases (``mzlsbass2``, ``testcase3`` …)."""
    path = LEGACYPIPE_TEST_DATA / case
    if not path.is_dir():
        unavailable(f"legacypipe test data not present: {path}")
    return path


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    reason = (
        str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    )
    return reason.removeprefix("Skipped: ")


def _as_failure(report: pytest.TestReport | pytest.CollectReport) -> None:
    reason = _skip_reason(report)
    report.outcome = "failed"
    report.longrepr = f"skipped with {REQUIRE_ENV}=1, where every test must run: {reason}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """In CI, a test's skip (in setup, the call or teardown) is reported as a failure."""
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and required():
        _as_failure(report)
    return report


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """In CI, a module skipped at collection (``importorskip``, ``allow_module_level``) fails."""
    report = yield
    if report.skipped and required():
        _as_failure(report)
    return report
