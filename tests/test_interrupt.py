"""Ctrl-C and SIGTERM to a real ``lsdr run zeropoints``: it stops cleanly, the next run resumes.

A tiny survey is simulated (one camera, one band, three passes: three images to calibrate)
and discovered once; each test runs ``lsdr run zeropoints`` on its own copy as a process of a
new session (as a terminal's foreground job), with one worker and one image per batch, waits
until the ledger shows one image done and one running, and signals it as a terminal
(``os.killpg``: the CLI's process and its Dask workers), SLURM (SIGTERM to every process) or
``kill -INT`` (the CLI's process alone) would.  The outputs of the resumed run are compared by
value with an undisturbed run's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from release_values import compare_releases

from lsdr.infra.ledger import Ledger, UnitFinish, default_url
from lsdr.survey.core.fileio import remove_temporaries

PHASE = "zeropoints"
RUN = ("--workers", "1", "--batch-size", "1")


def lsdr(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run this venv's ``lsdr`` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "lsdr", *args], capture_output=True, text=True, timeout=timeout
    )


def states(root: Path) -> dict[str, tuple[str, int]]:
    """The zeropoints units' (state, attempts) by key, read from the ledger's file itself."""
    with sqlite3.connect(root / "state" / "ledger.sqlite") as db:
        rows = db.execute("select key, state, attempts from units where phase = ?", (PHASE,))
        return {key: (state, attempts) for key, state, attempts in rows}


def sidecar_starts(root: Path) -> dict[str, float]:
    """When each zeropoints unit's recorded run started, by key (its provenance sidecar)."""
    starts = {}
    for path in (root / "state" / "provenance" / PHASE).glob("*.json"):
        data = json.loads(path.read_text())
        starts[data["key"]] = data["started"]
    return starts


def temporaries(root: Path) -> list[Path]:
    """Every ``tmp-<pid>-`` file under the release (its CP images included)."""
    return sorted(p for p in root.rglob("tmp-*") if p.is_file())


@pytest.fixture(scope="module")
def discovered(tmp_path_factory: pytest.TempPathFactory, prefect_api: str) -> Path:
    """A simulated tiny survey, discovered: three images for zeropoints."""
    root = tmp_path_factory.mktemp("interrupt") / "survey"
    made = lsdr(
        *("simulate", "--out", str(root), "--camera", "90prime", "--band", "g"),
        *("--passes", "3", "--binning", "4", "--ra-min", "180", "--ra-max", "180.3"),
        *("--dec-min", "32", "--dec-max", "32.3", "--workers", "1"),
    )
    assert made.returncode == 0, made.stderr
    found = lsdr("run", "discover", "--release-dir", str(root), "--workers", "1")
    assert found.returncode == 0, found.stderr
    return root


@pytest.fixture(scope="module")
def undisturbed(discovered: Path) -> Path:
    """The same survey's zeropoints run without an interrupt: the values to compare with."""
    root = discovered.parent / "undisturbed"
    shutil.copytree(discovered, root, symlinks=True)
    done = lsdr("run", PHASE, "--release-dir", str(root), *RUN)
    assert done.returncode == 0, done.stderr
    assert {s for s, _ in states(root).values()} == {"done"}
    assert len(states(root)) == 3
    return root


@pytest.fixture
def release(discovered: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the discovered survey for one test."""
    root = tmp_path / "survey"
    shutil.copytree(discovered, root, symlinks=True)
    yield root


def start_run(root: Path, grace_s: float | None) -> subprocess.Popen[str]:
    """Start ``lsdr run zeropoints`` in a session of its own, as a terminal's foreground job."""
    env = dict(os.environ)
    if grace_s is not None:
        env["LSDR_INTERRUPT_GRACE_S"] = str(grace_s)
    return subprocess.Popen(
        [sys.executable, "-m", "lsdr", "run", PHASE, "--release-dir", str(root), *RUN],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def wait_for_one_done_one_running(root: Path, run: subprocess.Popen[str]) -> dict[str, float]:
    """Return (the sidecars' start times) once the ledger has a unit done and one running."""
    while True:
        assert run.poll() is None, run.communicate()
        if (root / "state" / "ledger.sqlite").exists():
            now = [s for s, _ in states(root).values()]
            if now.count("done") >= 1 and now.count("running") == 1:
                return sidecar_starts(root)
        time.sleep(0.05)  # a poll, not a measure: nothing is asserted about time


def resume_line(root: Path) -> str:
    """The command the interrupted run names to resume it: its own."""
    return f"'lsdr run {PHASE} --release-dir {root} {' '.join(RUN)}' resumes"


def check_resumed(root: Path, undisturbed: Path, before: dict[str, float]) -> None:
    """The next run finishes every unit, redoes none done before, and writes the same values."""
    again = lsdr("run", PHASE, "--release-dir", str(root), *RUN)
    assert again.returncode == 0, again.stdout + again.stderr
    after = states(root)
    assert {s for s, _ in after.values()} == {"done"}, after
    assert len(after) == 3
    starts = sidecar_starts(root)
    for key, started in before.items():  # done before the interrupt: not started again
        assert starts[key] == started, key
        assert after[key] == ("done", 1), key
    assert temporaries(root) == []
    comparison = compare_releases(undisturbed, root)
    assert comparison.differences == [], comparison.differences
    assert any(rel.startswith("zpt/") for rel in comparison.compared), comparison.compared


@pytest.mark.timeout(600)
def test_ctrl_c_marks_the_running_unit_interrupted_and_the_next_run_resumes_it(
    release: Path, undisturbed: Path
) -> None:
    """A terminal's Ctrl-C (no grace): exit 130, one line, the running unit ``interrupted``."""
    run = start_run(release, grace_s=0)
    before = wait_for_one_done_one_running(release, run)
    os.killpg(run.pid, signal.SIGINT)
    out, err = run.communicate(timeout=300)

    assert run.returncode == 130, out + err
    assert "Traceback" not in out + err, err
    last = err.strip().splitlines()[-1]
    assert last == (
        f"lsdr: interrupted by SIGINT: {PHASE}: 1 unit stopped mid-run (interrupted), "
        f"1 not started, 1 finished; {resume_line(release)}"
    ), err
    now = states(release)
    assert sorted(s for s, _ in now.values()) == ["done", "interrupted", "pending"], now
    assert temporaries(release) == []

    status = lsdr("status", "--release-dir", str(release))
    assert status.returncode == 0, status.stderr
    assert f"INTERRUPTED {PHASE} 1: stopped by Ctrl-C or SIGTERM" in status.stdout, status.stdout

    check_resumed(release, undisturbed, before)
    interrupted = next(k for k, (s, _) in now.items() if s == "interrupted")
    assert states(release)[interrupted] == ("done", 2)  # started once more, by the rerun


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigterm_lets_the_running_unit_finish_and_starts_no_other(
    release: Path, undisturbed: Path
) -> None:
    """SLURM's SIGTERM to every process (the default grace): the running unit finishes, 143."""
    run = start_run(release, grace_s=None)
    before = wait_for_one_done_one_running(release, run)
    running = next(k for k, (s, _) in states(release).items() if s == "running")
    os.killpg(run.pid, signal.SIGTERM)
    out, err = run.communicate(timeout=300)

    assert run.returncode == 143, out + err
    assert "Traceback" not in out + err, err
    assert err.strip().splitlines()[-1] == (
        f"lsdr: interrupted by SIGTERM: {PHASE}: 0 units stopped mid-run (interrupted), "
        f"1 not started, 2 finished; {resume_line(release)}"
    ), err
    now = states(release)
    assert now[running] == ("done", 1)
    assert sorted(s for s, _ in now.values()) == ["done", "done", "pending"], now
    assert temporaries(release) == []
    check_resumed(release, undisturbed, {**before, running: sidecar_starts(release)[running]})


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_second_ctrl_c_stops_the_running_unit_at_once(release: Path) -> None:
    """``kill -INT`` of the CLI alone starts the grace; a terminal's second Ctrl-C ends it."""
    run = start_run(release, grace_s=3600)
    wait_for_one_done_one_running(release, run)
    os.kill(run.pid, signal.SIGINT)
    assert run.stderr is not None
    while "waiting up to" not in (line := run.stderr.readline()):
        assert line, run.communicate()
    assert "SIGINT: no more units start; waiting up to 3600 s" in line, line
    assert "running" in [s for s, _ in states(release).values()]
    os.killpg(run.pid, signal.SIGINT)
    out, rest = run.communicate(timeout=300)

    assert run.returncode == 130, out + rest
    assert "Traceback" not in out + rest, rest
    assert (
        rest.strip()
        .splitlines()[-1]
        .startswith(f"lsdr: interrupted by SIGINT: {PHASE}: 1 unit stopped mid-run (interrupted), ")
    ), rest
    assert sorted(s for s, _ in states(release).values()) == ["done", "interrupted", "pending"]
    assert temporaries(release) == []


def test_interrupt_marks_only_running_units_and_temporaries_go(tmp_path: Path) -> None:
    """The ledger changes running rows only; the stopped writer's ``tmp-<pid>-`` files go."""
    ledger = Ledger(default_url(tmp_path / "state"))
    ledger.plan(PHASE, ["a", "b", "c"])
    ledger.start(PHASE, ["a", "b"])
    ledger.finish(PHASE, [UnitFinish("b", "done")])
    workers = ledger.interrupt(PHASE, ["a", "b", "c"], "interrupted by SIGINT")
    assert workers == [(socket.gethostname(), os.getpid())]
    rows = {r.key: (r.state, r.message) for r in ledger.rows(PHASE)}
    assert rows == {
        "a": ("interrupted", "interrupted by SIGINT"),
        "b": ("done", None),
        "c": ("pending", None),
    }

    pid = os.getpid()
    stray = tmp_path / "zpt" / "x" / f"tmp-{pid}-a-annotated.fits"  # as a killed writer left it
    stray.parent.mkdir(parents=True)
    stray.write_text("half")
    kept = tmp_path / "zpt" / "x" / "tmp-1-b-annotated.fits"  # another process's: not removed
    kept.write_text("x")
    (tmp_path / "images").mkdir()
    image = tmp_path / "images" / f"tmp-{pid}-input.fits"  # under images/: not walked
    image.write_text("x")
    assert remove_temporaries(tmp_path, {pid}, skip=("images",)) == [stray]
    assert kept.exists() and image.exists() and not stray.exists()
