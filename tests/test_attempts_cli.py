"""``max_attempts`` exhausted, then ``lsdr retry`` after the fix, all through the real CLI.

On a copy of a tiny discovered survey (three images), ``lsdr run zeropoints`` runs with one
worker and one image per batch while this test SIGKILLs the worker process running one image
at each of its starts (the pid the ledger records): a real lost worker every time.  That image
is started exactly ``max_attempts`` times and then recorded as a failed ``infra`` unit saying
so; the others are done once.  Then the fix (no more kills), ``lsdr retry`` and the run again:
the image is done, nothing else starts again, and the tables equal an undisturbed run's.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from release_values import compare_releases
from test_interrupt import PHASE, RUN, discovered, lsdr, states, undisturbed

__all__ = ["discovered", "undisturbed"]  # the module's fixtures, shared with test_interrupt's

MAX_ATTEMPTS = 2


def running_pid(root: Path, key: str) -> tuple[int, int] | None:
    """(attempts, pid) of ``key`` while the ledger says it is running, else None."""
    try:
        with sqlite3.connect(f"file:{root}/state/ledger.sqlite?mode=ro", uri=True) as db:
            row = db.execute(
                "select state, attempts, pid from units where phase = ? and key = ?", (PHASE, key)
            ).fetchone()
    except sqlite3.Error:
        return None  # not written yet
    if row is None or row[0] != "running":
        return None
    return int(row[1]), int(row[2])


def run_killing(root: Path, key: str) -> tuple[subprocess.CompletedProcess[str], list[int]]:
    """``lsdr run zeropoints`` with the worker running ``key`` SIGKILLed at each start."""
    env = {**os.environ, "LSDR_MAX_ATTEMPTS": str(MAX_ATTEMPTS)}
    command = [sys.executable, "-m", "lsdr", "run", PHASE, "--release-dir", str(root), *RUN]
    run = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    killed: list[int] = []
    while run.poll() is None:
        found = running_pid(root, key)
        if found is not None and found[0] not in killed:
            try:
                os.kill(found[1], signal.SIGKILL)
                killed.append(found[0])
            except ProcessLookupError:
                pass
        time.sleep(0.05)  # a poll, not a measure
    out, err = run.communicate()
    return subprocess.CompletedProcess(command, run.returncode, out, err), killed


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_attempts_exhausted_then_retry_after_the_fix(
    discovered: Path, undisturbed: Path, tmp_path: Path
) -> None:
    """Exactly ``max_attempts`` starts, one recorded failure; retried after the fix: equal."""
    root = tmp_path / "survey"
    shutil.copytree(discovered, root, symlinks=True)
    keys = sorted(states(undisturbed))
    victim = keys[1]

    first, killed = run_killing(root, victim)
    assert first.returncode == 1, first.stdout[-2000:] + first.stderr[-2000:]
    assert killed == list(range(1, MAX_ATTEMPTS + 1))
    after = states(root)
    assert after[victim] == ("failed", MAX_ATTEMPTS)
    assert all(after[k] == ("done", 1) for k in keys if k != victim), after
    with sqlite3.connect(root / "state" / "ledger.sqlite") as db:
        (failure_class, message) = db.execute(
            "select failure_class, message from units where phase = ? and key = ?",
            (PHASE, victim),
        ).fetchone()
    assert failure_class == "infra"
    assert message.startswith(f"max_attempts ({MAX_ATTEMPTS}) reached: its worker was lost")
    assert f"'lsdr retry --phase {PHASE}'" in message
    shown = lsdr("status", "--release-dir", str(root))
    assert shown.returncode == 0 and victim in shown.stdout and "max_attempts" in shown.stdout

    # The fix: nothing kills the worker any more. A retry re-queues the one failed unit.
    retried = lsdr("retry", "--release-dir", str(root), "--phase", PHASE)
    assert retried.returncode == 0, retried.stderr
    assert f"1 failed unit(s) of {PHASE} re-queued" in retried.stdout
    assert states(root)[victim] == ("pending", 0)
    again = lsdr("run", PHASE, "--release-dir", str(root), *RUN)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    final = states(root)
    assert final[victim] == ("done", 1)
    assert all(final[k] == ("done", 1) for k in keys), final  # the others never started again
    comparison = compare_releases(undisturbed, root)
    assert comparison.values_equal, [str(d) for d in comparison.differences[:10]]
    assert any(rel.startswith("zpt/") for rel in comparison.compared)
