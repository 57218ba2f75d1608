"""Two real ``lsdr run`` on one release at once: one runs, one refuses, one waits and finds it done.

A small survey is simulated (one camera, one band, two exposures) and discovered; then
``lsdr run zeropoints`` starts, and, once it holds the release's lock, a second one refuses
naming it and a third, with ``--wait``, waits for it and then finds every unit done.  All three
report to the session's Prefect server; the first two run their own Dask cluster.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from small_release import unit_states

from lsdr.infra.release_lock import holders


def lsdr_process(*args: str) -> subprocess.Popen[str]:
    """Start this venv's ``lsdr``."""
    return subprocess.Popen(
        [sys.executable, "-m", "lsdr", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_holder(lock: Path, pid: int, process: subprocess.Popen[str]) -> None:
    """Return once ``pid`` is recorded as holding the lock (fail if its process ended first)."""
    while pid not in {h.pid for h in holders(lock)}:
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)  # a poll, not a measure: nothing is asserted about time


@pytest.mark.timeout(600)
def test_a_second_run_refuses_and_a_waiting_one_finds_the_work_done(
    tmp_path: Path, prefect_api: str
) -> None:
    """The refusal names the first run's host, pid and command; ``--wait`` reruns nothing."""
    root = tmp_path / "survey"
    made = subprocess.run(
        [
            *(sys.executable, "-m", "lsdr", "simulate", "--out", str(root)),
            *("--camera", "90prime", "--band", "g", "--passes", "1", "--binning", "4"),
            *("--ra-min", "180", "--ra-max", "180.3", "--dec-min", "32", "--dec-max", "32.3"),
            *("--workers", "1"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr
    common = ("--release-dir", str(root), "--workers", "1")
    discovered = subprocess.run(
        [sys.executable, "-m", "lsdr", "run", "discover", *common],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert discovered.returncode == 0, discovered.stderr

    lock = root / "state" / "release.lock"
    first = lsdr_process("run", "zeropoints", *common)
    wait_for_holder(lock, first.pid, first)
    second = subprocess.run(
        [sys.executable, "-m", "lsdr", "run", "zeropoints", *common],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.poll() is None, "the first run ended before the second asked: no overlap"
    assert second.returncode == 2, second.stdout + second.stderr
    assert second.stderr.splitlines() == [second.stderr.strip()]
    line = second.stderr.strip()
    assert line.startswith(
        f"lsdr: error: release {root} is held by host {socket.gethostname()} pid {first.pid} "
    ), line
    assert line.endswith(
        f"(lsdr run zeropoints --release-dir {root} --workers 1): wait with --wait, or stop it"
    ), line

    third = lsdr_process("run", "zeropoints", *common, "--wait")
    assert third.stderr is not None
    waiting = third.stderr.readline()
    assert f"is held by host {socket.gethostname()} pid {first.pid} " in waiting, waiting
    assert waiting.rstrip().endswith("waiting for it to let go"), waiting
    out, err = first.communicate(timeout=540)
    assert first.returncode == 0, out + err
    assert "zeropoints: 1 done, 0 already done, 0 failed" in out + err
    done_first = unit_states(root)

    out, err = third.communicate(timeout=540)
    assert third.returncode == 0, out + err
    assert "zeropoints: 0 done, 1 already done, 0 failed" in out + err
    assert unit_states(root) == done_first
    assert holders(lock) == []
