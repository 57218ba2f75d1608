"""The lsdr command: bad input gives one clear line and exit status 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest


def lsdr(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m lsdr`` with arguments, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "lsdr", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_commands():
    """--help lists the commands and the phases to come."""
    result = lsdr("--help")
    assert result.returncode == 0
    for word in ("bricks", "simulate", "demo", "status"):
        assert word in result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("bricks", "info", "../1804p325"), "not a brick name"),
        (("bricks", "info", "1803p325"), "not a brick of the Legacy Surveys grid"),
        (("bricks", "at", "400", "10"), "RA 400 is outside [0, 360)"),
        (("bricks", "at", "10", "--", "-95"), "Dec -95 is outside [-90, 90]"),
        (("bricks", "list", "--dec-min", "33", "--dec-max", "33"), "empty region"),
        (("bricks", "list", "--ra-min", "-1"), "ra_min -1 is outside [0, 360]"),
        (("simulate", "--out", "x", "--camera", "hsc2"), "unknown camera"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: tuple[str, ...], needle: str):
    """Each bad input is reported in one line on stderr with exit status 2."""
    result = lsdr(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]


def test_bricks_lookup_and_list():
    """bricks at/info/list print the grid's answers."""
    assert lsdr("bricks", "at", "180.5", "32.5").stdout.strip() == "1804p325"
    listed = lsdr("bricks", "list").stdout.split()
    assert len(listed) == 15 and listed[0] == "1801p320"
    info = lsdr("bricks", "info", "1804p325")
    assert info.returncode == 0 and "508644" in info.stdout


def test_run_rejects_bad_region_and_missing_release(tmp_path):
    """`lsdr run` exits 2 with one line for a malformed region or a missing release dir."""
    import subprocess
    import sys

    def lsdr(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lsdr", *args], capture_output=True, text=True, check=False
        )

    bad = lsdr("run", "bricks", "--release-dir", str(tmp_path), "--region", "1,2,3")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "region" in bad.stderr
    off_sky = lsdr("run", "bricks", "--release-dir", str(tmp_path), "--region", "10,20,80,95")
    assert off_sky.returncode == 2 and "outside [-90, 90]" in off_sky.stderr
    missing = lsdr("run", "zeropoints", "--release-dir", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert "Traceback" not in bad.stderr + off_sky.stderr + missing.stderr


def test_status_lists_counts_and_failed_units(tmp_path):
    """`lsdr status` shows units by state and each failed unit with its reason."""
    import subprocess
    import sys

    from lsdr.infra.ledger import Ledger, UnitFinish, default_url

    ledger = Ledger(default_url(tmp_path / "state"))
    ledger.plan("zeropoints", ["a.fits.fz", "b.fits.fz"])
    ledger.start("zeropoints", ["a.fits.fz", "b.fits.fz"])
    ledger.finish(
        "zeropoints",
        [
            UnitFinish("a.fits.fz", "done"),
            UnitFinish(
                "b.fits.fz", "failed", failure_class="science", message="b: HDU 2 truncated"
            ),
        ],
    )
    done = subprocess.run(
        [sys.executable, "-m", "lsdr", "status", "--release-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "zeropoints" in done.stdout
    assert "FAILED zeropoints b.fits.fz [science, 1 start(s)]: b: HDU 2 truncated" in done.stdout
