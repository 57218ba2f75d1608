"""A damaged ledger: detected by every command in one line, moved aside and rebuilt.

The release is small and real (tests/small_release.py: five probe units run by lsdr's runner,
one failed); its ``state/ledger.sqlite`` is then damaged for real: garbage written over its
first page, the file cut in half, or a page in its middle overwritten.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from small_release import make_small_release, unit_states
from test_release_lock import lsdr, tree

from lsdr.infra.ledger import Ledger, UnitFinish, default_url


def garbage_header(db: Path) -> None:
    """Overwrite the first 4 KiB (the header and schema page) with random bytes."""
    with db.open("r+b") as f:
        f.write(os.urandom(4096))


def truncated(db: Path) -> None:
    """Cut the file to half its size, as a copy or a disk that filled up would."""
    with db.open("r+b") as f:
        f.truncate(db.stat().st_size // 2)


def middle_page(db: Path) -> None:
    """Overwrite one page in the middle: the header still reads, the B-tree does not."""
    with db.open("r+b") as f:
        f.seek(4096 * 2)
        f.write(os.urandom(4096))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "garbage": garbage_header,
    "truncated": truncated,
    "middle page": middle_page,
}


def grown_release(root: Path) -> set[tuple[str, str, str]]:
    """The small release with enough ledger rows to span several pages; its rows."""
    make_small_release(root)
    ledger = Ledger(default_url(root / "state"))
    keys = [f"pad{i:05d}-{'x' * 40}" for i in range(2000)]
    ledger.plan("padding", keys)
    ledger.close()
    # Checkpoint the WAL into the file, so that the damage hits the rows themselves.
    db = sqlite3.connect(root / "state" / "ledger.sqlite")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return unit_states(root)


def expected_line(root: Path) -> tuple[str, str]:
    """The start and end of the one line every command prints on the damaged ledger."""
    start = f"lsdr: error: {root}/state/ledger.sqlite is not a readable ledger ("
    end = (
        f"): 'lsdr ledger rebuild --release-dir {root}' moves it aside and rebuilds it from "
        "the provenance sidecars"
    )
    return start, end


COMMANDS = [
    ("status",),
    ("run", "kdtree"),
    ("run", "release"),
    ("retry", "--phase", "probe"),
    ("recover",),
    ("run", "nightly"),
]
"""Commands that read or write the ledger: each refuses the damaged one in the same line."""


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_every_command_names_the_damaged_ledger_and_the_fix(tmp_path: Path, damage: str) -> None:
    """Exit 2, one line naming the file and ``lsdr ledger rebuild``, nothing written."""
    root = tmp_path / "release"
    grown_release(root)
    DAMAGE[damage](root / "state" / "ledger.sqlite")
    before = tree(root)
    start, end = expected_line(root)
    for args in COMMANDS:
        done = lsdr(*args, "--release-dir", str(root))
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, (args, done.stderr)
        lines = done.stderr.splitlines()
        assert len(lines) == 1, (args, done.stderr)
        assert lines[0].startswith(start) and lines[0].endswith(end), (args, lines[0])
    assert tree(root) == before, "a command wrote beside the damaged ledger"


def test_the_reason_is_sqlites_own(tmp_path: Path) -> None:
    """Garbage reads as "file is not a database", a cut file as a malformed image."""
    for damage, reason in (
        ("garbage", "(file is not a database)"),
        ("truncated", "(database disk image is malformed)"),
    ):
        root = tmp_path / damage
        grown_release(root)
        DAMAGE[damage](root / "state" / "ledger.sqlite")
        assert reason in lsdr("status", "--release-dir", str(root)).stderr, damage


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_rebuild_moves_the_damaged_ledger_aside_and_restores_the_units(
    tmp_path: Path, damage: str
) -> None:
    """The rebuilt (phase, key, state) rows are the units' rows before the damage.

    Only the units the sidecars record come back (the ``padding`` rows were planned, never
    run, so no sidecar has them); the damaged file is kept, byte for byte, beside it.
    """
    root = tmp_path / "release"
    before = grown_release(root)
    db = root / "state" / "ledger.sqlite"
    DAMAGE[damage](db)
    damaged = hashlib.sha256(db.read_bytes()).hexdigest()

    done = lsdr("ledger", "rebuild", "--release-dir", str(root))
    assert done.returncode == 0, done.stdout + done.stderr
    [aside] = sorted((root / "state").glob("ledger.sqlite.corrupt-*"))
    assert hashlib.sha256(aside.read_bytes()).hexdigest() == damaged
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"moved the damaged ledger aside: {aside} (")
    assert lines[1:] == [
        "probe: 5 units",
        f"rebuilt 5 units of 1 phases from {root}/state/provenance",
    ]
    run_units = {row for row in before if row[0] == "probe"}
    assert run_units == {("probe", f"u{i:03d}", "done") for i in range(4)} | {
        ("probe", "u004", "failed")
    }
    assert unit_states(root) == run_units

    status = lsdr("status", "--release-dir", str(root))
    assert status.returncode == 0, status.stderr
    assert "FAILED probe u004 [science, 1 start(s)]: " in status.stdout


def test_rebuild_of_a_sound_ledger_keeps_it_in_place(tmp_path: Path) -> None:
    """A readable ledger is not moved: its rows are replaced from the sidecars, in place."""
    root = tmp_path / "release"
    make_small_release(root)
    before = unit_states(root)
    done = lsdr("ledger", "rebuild", "--release-dir", str(root))
    assert done.returncode == 0, done.stderr
    assert "moved" not in done.stdout
    assert list((root / "state").glob("ledger.sqlite.corrupt-*")) == []
    assert unit_states(root) == before


def test_a_rebuild_is_one_transaction(tmp_path: Path) -> None:
    """Rows of several phases replaced at once: a failing row leaves every phase as it was."""
    ledger = Ledger(default_url(tmp_path / "state"))
    ledger.plan("a", ["1", "2"])
    ledger.plan("b", ["3"])
    good = [UnitFinish(key="9", state="done")]
    bad = [UnitFinish(key="x", state="done"), UnitFinish(key="x", state="done")]  # same key
    with pytest.raises(Exception, match="UNIQUE constraint failed"):
        ledger.replace_phases({"a": good, "b": bad}, {})
    assert {(r.phase, r.key) for p in ("a", "b") for r in ledger.rows(p)} == {
        ("a", "1"),
        ("a", "2"),
        ("b", "3"),
    }
    ledger.close()


def test_a_flow_run_by_the_worker_fails_with_the_same_line(
    tmp_path: Path, prefect_api: str
) -> None:
    """The deployable ``run-kdtree`` on a damaged ledger: FAILED, its message the line."""
    from lsdr.deployments.phases import run_kdtree

    root = tmp_path / "release"
    grown_release(root)
    truncated(root / "state" / "ledger.sqlite")
    before = tree(root)
    state = run_kdtree(release_dir=str(root), return_state=True)
    assert state.is_failed(), state
    start, end = expected_line(root)
    message = str(state.message)
    assert start.removeprefix("lsdr: error: ") in message, message
    assert message.endswith(end), message
    assert "Traceback" not in message
    changed = {p for p, digest in tree(root).items() if before.get(p) != digest}
    assert changed <= {"state/release.lock"}, changed  # its holder's record, nothing else


def test_a_writer_killed_mid_transaction_leaves_the_ledger_as_it_was(tmp_path: Path) -> None:
    """SIGKILL inside ``Ledger.finish``'s transaction: no row changed, the next writer writes.

    The killed write had flushed rows into its open transaction; SQLite rolls them back, so
    the ledger reads (no damage line), holds the rows from before, and rebuilds to the same.
    """
    import signal

    root = tmp_path / "release"
    keys = make_small_release(root)
    before = unit_states(root)
    writer = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("ledger_writer.py")), str(root), *keys],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "mid-write"
    # Its transaction has written: SQLite's write lock is its, another writer is turned away.
    other = sqlite3.connect(root / "state" / "ledger.sqlite", timeout=0)
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        other.execute("BEGIN IMMEDIATE")
    other.close()
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=60)

    status = lsdr("status", "--release-dir", str(root))
    assert status.returncode == 0, status.stderr
    assert "never committed" not in status.stdout
    assert unit_states(root) == before
    retried = lsdr("retry", "--release-dir", str(root), "--phase", "probe")
    assert retried.returncode == 0, retried.stderr  # the killed writer's lock on the file is gone
    assert retried.stdout.startswith("1 failed unit(s) of probe re-queued")
    rebuilt = lsdr("ledger", "rebuild", "--release-dir", str(root))
    assert rebuilt.returncode == 0, rebuilt.stderr
    # The re-queued unit's sidecar was removed by retry: the rebuild has the four done units.
    assert unit_states(root) == {row for row in before if row[2] == "done"}
