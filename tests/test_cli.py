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
