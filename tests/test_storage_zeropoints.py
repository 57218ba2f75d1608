"""A full disk under a real ``lsdr run zeropoints``: it waits for space, then completes.

A tiny survey is simulated and discovered, then copied; the copy's ``zpt/`` is a small real
tmpfs filled to its last byte, so every image's CCD tables fail to write (CFITSIO's error, its
errno lost).  While the run backs off, the filler is removed; the units are resubmitted and
complete.  The tables equal, value for value, those of the undisturbed original.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import storage_units as su

from lsdr.survey.core.layout import ReleaseLayout

ZPT_ARGS = ("--workers", "1", "--release-dir")
"""``lsdr run zeropoints``'s options here, the release directory to follow."""


def lsdr(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the venv's ``lsdr`` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "lsdr", *args],
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, **(env or {})},
    )


def zeropoint_rows(root: Path) -> dict[str, tuple[int, int, int]]:
    """The ledger's zeropoints units: key -> (done?, attempts, infra retries), by sqlite3."""
    db = sqlite3.connect(ReleaseLayout(root).ledger_db)
    try:
        retries: dict[str, int] = dict(
            db.execute("SELECT key, count(*) FROM retries WHERE phase='zeropoints' GROUP BY key")
        )
        return {
            key: (int(state == "done"), attempts, retries.get(key, 0))
            for key, state, attempts in db.execute(
                "SELECT key, state, attempts FROM units WHERE phase = 'zeropoints'"
            )
        }
    finally:
        db.close()


def failed_zeropoints(root: Path) -> bool:
    """Whether a zeropoints unit is recorded failed (read-only; the run writes on)."""
    db = sqlite3.connect(f"file:{ReleaseLayout(root).ledger_db}?mode=ro", uri=True)
    try:
        query = "SELECT count(*) FROM units WHERE phase='zeropoints' AND state='failed'"
        return bool(db.execute(query).fetchone()[0])
    except sqlite3.OperationalError:
        return False  # not created yet
    finally:
        db.close()


def tables(root: Path) -> dict[str, np.ndarray]:
    """Every FITS table under ``zpt/``, by its path in the release."""
    import fitsio

    return {
        str(p.relative_to(root)): fitsio.read(str(p), ext=1)
        for p in sorted((root / "zpt").rglob("*.fits"))
    }


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_zeropoints_on_a_full_disk_wait_for_space_then_equal_an_undisturbed_run(
    tmp_path: Path, prefect_api: str
) -> None:
    """0 lost, 0 duplicated, the tables' values unchanged, no tmp- file, the waits said."""
    original = tmp_path / "survey"
    made = lsdr(
        *("simulate", "--out", str(original), "--camera", "90prime", "--band", "g"),
        *("--passes", "1", "--binning", "4", "--ra-min", "180", "--ra-max", "180.3"),
        *("--dec-min", "32", "--dec-max", "32.3", "--workers", "1"),
    )
    assert made.returncode == 0, made.stderr
    discovered = lsdr("run", "discover", "--release-dir", str(original), "--workers", "1")
    assert discovered.returncode == 0, discovered.stderr
    copy = tmp_path / "copy"
    shutil.copytree(original, copy, symlinks=True)
    undisturbed = lsdr("run", "zeropoints", "--release-dir", str(original), "--workers", "1")
    assert undisturbed.returncode == 0, undisturbed.stderr
    expected = tables(original)
    assert expected, "the undisturbed run wrote no table"

    space = {"LSDR_SPACE_BACKOFF": "1s", "LSDR_SPACE_BACKOFFS": "7", "LSDR_SPACE_MIN_FREE_MB": "1"}
    with su.tmpfs(copy / "zpt", "4m") as mount:
        filler = su.fill(mount)
        run = subprocess.Popen(
            [sys.executable, "-m", "lsdr", "run", "zeropoints", *ZPT_ARGS, str(copy)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **space},
        )
        try:
            while run.poll() is None and not failed_zeropoints(copy):
                time.sleep(0.05)  # a poll: nothing is asserted about time
            filler.unlink(missing_ok=True)
            _, stderr = run.communicate(timeout=600)
        finally:
            if run.poll() is None:
                run.kill()
                run.communicate()
        got = tables(copy)
    assert run.returncode == 0, stderr
    # What the user sees: the wait for space, then the resubmission, on stderr.
    assert f"zeropoints: {mount} full (" in stderr, stderr
    assert "before resubmitting (back-off 1 of 7)" in stderr, stderr
    assert f"zeropoints: {mount} has " in stderr and "free again: resubmitting" in stderr, stderr
    # 0 lost, 0 duplicated: every unit done; one that found the disk full started twice (that
    # start, one after the back-off), the second recorded as its one infra retry; a unit run
    # after the space was freed, once.
    rows = zeropoint_rows(copy)
    assert rows and all(done == 1 for done, _, _ in rows.values()), rows
    assert all(attempts == 1 + retries and retries <= 1 for _, attempts, retries in rows.values())
    assert any(retries == 1 for _, _, retries in rows.values()), rows
    assert sorted(got) == sorted(expected)
    for name, table in expected.items():
        assert got[name].dtype.names == table.dtype.names
        for column in table.dtype.names or ():
            np.testing.assert_array_equal(got[name][column], table[column], err_msg=name)
    assert sorted(copy.rglob("tmp-*")) == []
