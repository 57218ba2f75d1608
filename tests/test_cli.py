"""The lsdr command: bad input gives one clear line and exit status 2, never a traceback."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

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


# -- bad options are refused before anything starts; read-only commands write nothing ----------


def tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` (relative) with its file's SHA-256; "" for a directory."""
    return {
        path.relative_to(root).as_posix(): (
            hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        )
        for path in sorted(root.rglob("*"))
    }


BAD_OPTIONS = [
    (("run", "tractor", "--brick", "9999p999"), "--brick", "9999p999"),
    (("run", "tractor", "--brick", "../1804p325"), "--brick", "../1804p325"),
    (("run", "depth", "--brick", "1804p325", "--brick", "1803p325"), "--brick", "1803p325"),
    (("run", "bricks", "--region", "10,20,1,0"), "--region", "10,20,1,0"),
    (("run", "bricks", "--region", "10,20,80,95"), "--region", "10,20,80,95"),
    (("run", "pretractor", "--region", "350,370,0,1"), "--region", "350,370,0,1"),
    (("run", "tractor", "--width", "0"), "--width", "0"),
    (("run", "release", "--height", "0"), "--height", "0"),
    (("run", "tractor", "--pixscale", "0"), "--pixscale", "0"),
    (("run", "tractor", "--fit-budget", "-1"), "--fit-budget", "-1"),
    (("run", "tractor", "--checkpoint-period", "-5"), "--checkpoint-period", "-5"),
    (("run", "zeropoints", "--workers", "0"), "--workers", "0"),
    (("run", "zeropoints", "--threads", "0"), "--threads", "0"),
    (("run", "zeropoints", "--batch-size", "0"), "--batch-size", "0"),
    (
        ("run", "discover", "--date-min", "2020-01-02", "--date-max", "2020-01-01"),
        "--date-min",
        "2020-01-02",
    ),
    (("run", "pretractor", "--camera", "hsc"), "--camera", "hsc"),
    (("run", "sweeps", "--version", "../x"), "--version", "../x"),
    (("run", "external", "--radius", "-1"), "--radius", "-1"),
    (("run", "publish", "--destination", ""), "--destination", "''"),
    # Values the CLI library itself refuses: the same one line, not its usage box.
    (("run", "tractor", "--width", "abc"), "--width", "'abc'"),
    (("run", "zeropoints", "--workers", "x"), "--workers", "'x'"),
]
"""A bad option, the option and the value its one line must name."""


@pytest.mark.parametrize(("args", "option", "value"), BAD_OPTIONS)
def test_bad_run_option_exits_2_before_anything_starts(
    fresh_release: Path, args: tuple[str, ...], option: str, value: str
):
    """One line naming the option and the value, status 2; no server, no state/, no file."""
    before = tree(fresh_release)
    result = lsdr(*args, "--release-dir", str(fresh_release))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lsdr: error: ")
    assert option in lines[0] and value in lines[0], lines[0]
    assert "Prefect server" not in result.stdout + result.stderr
    assert not (fresh_release / "state").exists()
    assert tree(fresh_release) == before


def test_publish_destination_inside_the_release_is_refused(fresh_release: Path):
    """A destination inside the release (rsync would copy it into itself): refused, no write."""
    before = tree(fresh_release)
    inside = str(fresh_release / "published")
    result = lsdr("run", "publish", "--release-dir", str(fresh_release), "--destination", inside)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert "--destination" in line and inside in line
    assert tree(fresh_release) == before


READ_COMMANDS = [
    ("status",),
    ("retry", "--phase", "zeropoints"),
    ("recover",),
    ("ledger", "rebuild"),
    ("server", "status"),
    ("server", "url"),
    ("server", "down"),
    ("run", "kdtree"),
]
"""Commands that take a release directory (the first seven only read or repair it)."""


@pytest.mark.parametrize("command", READ_COMMANDS, ids=" ".join)
def test_a_directory_that_is_not_a_release_is_refused(tmp_path: Path, command: tuple[str, ...]):
    """An empty directory (not a release) and a missing one: status 2, one line, nothing made."""
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = tmp_path / "missing"
    for directory in (empty, missing):
        result = lsdr(*command, "--release-dir", str(directory))
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and str(directory) in lines[0], result.stderr
    assert list(empty.iterdir()) == []
    assert not missing.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_status_of_a_release_that_has_not_run_writes_nothing(fresh_release: Path):
    """`lsdr status` before any run says that nothing has run, exit 0, and creates no file."""
    before = tree(fresh_release)
    result = lsdr("status", "--release-dir", str(fresh_release))
    assert result.returncode == 0, result.stderr
    assert "nothing has run yet" in result.stdout
    assert tree(fresh_release) == before
    # No server runs: `server status` says so (1), `server url` has none to print (2).
    assert lsdr("server", "status", "--release-dir", str(fresh_release)).returncode == 1
    assert lsdr("server", "url", "--release-dir", str(fresh_release)).returncode == 2
    assert tree(fresh_release) == before


def test_status_reads_the_ledger_without_writing(tmp_path: Path):
    """With a ledger, `lsdr status` reports it and leaves every file byte for byte as it was."""
    from lsdr.infra.ledger import Ledger, UnitFinish, default_url

    ledger = Ledger(default_url(tmp_path / "state"))
    ledger.plan("merge", ["survey-ccds"])
    ledger.finish("merge", [UnitFinish("survey-ccds", "failed", failure_class="science")])
    ledger.close()
    before = tree(tmp_path)
    result = lsdr("status", "--release-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "FAILED merge survey-ccds [science" in result.stdout
    assert tree(tmp_path) == before
