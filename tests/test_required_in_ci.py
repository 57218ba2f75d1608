"""CI's guard against skips (``required_in_ci``), run on a small test file by a real pytest.

Each case runs ``python -m pytest -p required_in_ci`` in a fresh directory on a file with a
passing test, a ``pytest.skip``, a ``skipif`` mark, an ``xfail`` and a ``slow`` test, with and
without ``LSDR_REQUIRE_LEGACYPIPE=1``, and reads its exit status and outcome counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

SAMPLE = """
import pytest

def test_runs():
    assert True

def test_skips_at_run_time():
    pytest.skip("no data here")

@pytest.mark.skipif(True, reason="not on this machine")
def test_skipped_by_a_mark():
    pass

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_to_fail():
    assert False

@pytest.mark.slow
def test_slow():
    pytest.skip("would be skipped if it ran")
"""

MODULE_SKIP = """
import pytest

pytest.importorskip("lsdr_no_such_module_7f3a")

def test_never_collected():
    pass
"""

OUTCOMES = """
import json
import pytest

SEEN = {}

@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome != "passed":
        SEEN[report.nodeid.split("::")[-1]] = (
            "xfailed" if hasattr(report, "wasxfail") else report.outcome
        )

def pytest_sessionfinish(session):
    with open("outcomes.json", "w") as f:
        json.dump(SEEN, f)
"""


def run_pytest(
    tmp_path: Path, source: str, *args: str, required: bool
) -> tuple[int, dict[str, str], str]:
    """Exit status, test outcomes and output of pytest on ``source`` (as ``test_sample.py``)."""
    (tmp_path / "test_sample.py").write_text(source)
    (tmp_path / "conftest.py").write_text(OUTCOMES)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: a slow test\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "LSDR_REQUIRE")) and k != "CI"
    }
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p)
    if required:
        env["LSDR_REQUIRE_LEGACYPIPE"] = "1"
    command = [sys.executable, "-m", "pytest", "-p", "required_in_ci", "-p", "no:cacheprovider"]
    command += ["-q", "-rA", *args]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    outcomes_file = tmp_path / "outcomes.json"
    outcomes = json.loads(outcomes_file.read_text()) if outcomes_file.exists() else {}
    return done.returncode, outcomes, done.stdout + done.stderr


def test_outside_ci_a_skip_stays_a_skip(tmp_path: Path) -> None:
    """Without LSDR_REQUIRE_LEGACYPIPE the run passes with its two skips and the xfail."""
    status, outcomes, output = run_pytest(tmp_path, SAMPLE, "-m", "not slow", required=False)
    assert status == 0, output
    assert outcomes == {
        "test_runs": "passed",
        "test_skips_at_run_time": "skipped",
        "test_skipped_by_a_mark": "skipped",
        "test_expected_to_fail": "xfailed",
    }


@pytest.mark.parametrize("workers", [[], ["-n", "2", "--dist", "loadfile"]], ids=["", "xdist"])
def test_in_ci_every_skip_fails_the_run_with_its_reason(tmp_path: Path, workers: list[str]) -> None:
    """With LSDR_REQUIRE_LEGACYPIPE=1 both skips are failures naming why; the xfail stays.

    Also under pytest-xdist, as ``make pytest`` runs: the workers' reports carry the failure.
    """
    status, outcomes, output = run_pytest(
        tmp_path, SAMPLE, "-m", "not slow", *workers, required=True
    )
    assert status == pytest.ExitCode.TESTS_FAILED, output
    assert outcomes == {
        "test_runs": "passed",
        "test_skips_at_run_time": "failed",
        "test_skipped_by_a_mark": "failed",
        "test_expected_to_fail": "xfailed",
    }
    assert "where every test must run: no data here" in output
    assert "where every test must run: not on this machine" in output


def test_in_ci_tests_left_out_by_a_marker_are_not_skips(tmp_path: Path) -> None:
    """``-m`` deselects (no report): a run of only the passing and xfail tests succeeds in CI."""
    status, outcomes, output = run_pytest(
        tmp_path,
        SAMPLE,
        "-m",
        "not slow",
        "-k",
        "runs or expected",
        required=True,
    )
    assert status == 0, output
    assert outcomes == {"test_runs": "passed", "test_expected_to_fail": "xfailed"}
    assert "3 deselected" in output


def test_in_ci_a_module_skipped_at_collection_fails(tmp_path: Path) -> None:
    """An ``importorskip`` of a missing module fails collection in CI; elsewhere it skips."""
    status, _, output = run_pytest(tmp_path, MODULE_SKIP, required=False)
    assert status == pytest.ExitCode.NO_TESTS_COLLECTED, output
    assert "1 skipped" in output
    status, _, output = run_pytest(tmp_path, MODULE_SKIP, required=True)
    assert status == pytest.ExitCode.INTERRUPTED, output
    assert "where every test must run: could not import 'lsdr_no_such_module_7f3a'" in output
