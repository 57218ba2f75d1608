"""The release lock with real processes: a holder started here, a second ``lsdr`` beside it.

The holder (tests/lock_holder.py) takes ``state/release.lock`` through lsdr's own code and
holds it until its stdin closes (a run that ends) or it is killed (a run that dies).  The
second writer is the real ``python -m lsdr``: ``ledger rebuild``, ``retry`` and ``run`` (which
refuse before any server, cluster or log file starts); the read-only commands run beside it.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from small_release import make_small_release

from lsdr.infra.release_lock import holders

HOLDER = Path(__file__).with_name("lock_holder.py")


def lsdr(*args: str) -> subprocess.CompletedProcess[str]:
    """Run this venv's ``lsdr`` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "lsdr", *args], capture_output=True, text=True, timeout=300
    )


def tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its file's SHA-256 ("" for a directory)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else ""
        for p in sorted(root.rglob("*"))
    }


class Holder:
    """A real process holding the release's lock (started; ``held`` read from its stdout)."""

    def __init__(self, root: Path, mode: str, command: str) -> None:
        """Start it and wait until it says it holds the lock."""
        self.process = subprocess.Popen(
            [sys.executable, str(HOLDER), str(root), mode, command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "held"
        self.pid = self.process.pid

    def let_go(self) -> None:
        """End it as a finished run ends: it records the release and lets go."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.wait(timeout=60) == 0

    def kill(self) -> None:
        """Kill it (SIGKILL), as a crashed run: the kernel lets go, its record stays."""
        os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=60)


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """A small real release: five probe units run, one failed (tests/small_release.py)."""
    root = tmp_path / "release"
    make_small_release(root)
    return root


@pytest.fixture
def started() -> Iterator[list[Holder]]:
    """The holders a test starts; any still running at its end are killed."""
    made: list[Holder] = []
    yield made
    for h in made:
        if h.process.poll() is None:
            h.kill()


def hold(started: list[Holder], root: Path, mode: str = "exclusive", command: str = "") -> Holder:
    """Start a holder of ``root``'s lock, recording ``command`` as its command line."""
    holder = Holder(root, mode, command or f"lsdr run tractor --release-dir {root}")
    started.append(holder)
    return holder


def test_a_second_writer_refuses_naming_the_holder(release: Path, started: list[Holder]) -> None:
    """``ledger rebuild``, ``retry`` and ``run`` exit 2 with one line naming host, pid, command."""
    holder = hold(started, release)
    before = tree(release)
    expected_start = (
        f"lsdr: error: release {release} is held by host {socket.gethostname()} "
        f"pid {holder.pid} since "
    )
    expected_end = f" UTC (lsdr run tractor --release-dir {release}): wait with --wait, or stop it"
    for args in (
        ("ledger", "rebuild"),
        ("retry", "--phase", "probe"),
        ("run", "kdtree"),
        ("run", "release"),
    ):
        done = lsdr(*args, "--release-dir", str(release))
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        lines = done.stderr.splitlines()
        assert len(lines) == 1, (args, done.stderr)
        assert lines[0].startswith(expected_start), (args, lines[0])
        assert lines[0].endswith(expected_end), (args, lines[0])
        assert "Traceback" not in done.stderr
    assert tree(release) == before, "a refused writer wrote"


def test_with_wait_a_writer_says_whom_it_waits_for_then_runs(
    release: Path, started: list[Holder]
) -> None:
    """``--wait`` prints one waiting line, blocks while the holder runs, then does its work."""
    holder = hold(started, release)
    waiter = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lsdr",
            "ledger",
            "rebuild",
            "--release-dir",
            str(release),
            "--wait",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert waiter.stderr is not None
    line = waiter.stderr.readline().strip()
    assert line.startswith(f"lsdr: release {release} is held by host {socket.gethostname()} ")
    assert f"pid {holder.pid} since " in line
    assert line.endswith(
        "(lsdr run tractor --release-dir " + f"{release}): waiting for it to let go"
    )
    assert waiter.poll() is None, "it did not wait"
    assert [h.pid for h in holders(release / "state" / "release.lock")] == [holder.pid]
    holder.let_go()
    out, err = waiter.communicate(timeout=120)
    assert waiter.returncode == 0, out + err
    assert err == "", err  # one line said it, once
    assert out.splitlines()[-1] == f"rebuilt 5 units of 1 phases from {release}/state/provenance"
    assert holders(release / "state" / "release.lock") == [], "the waiter did not let go"


def test_a_dead_holders_lock_is_taken_over_and_said_so(
    release: Path, started: list[Holder]
) -> None:
    """A holder killed with SIGKILL leaves its record; the next writer runs and names it."""
    command = f"lsdr run release --release-dir {release}"
    dead = hold(started, release, command=command)
    dead.kill()
    [left] = holders(release / "state" / "release.lock")
    assert left.pid == dead.pid
    done = lsdr("ledger", "rebuild", "--release-dir", str(release))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        f"lsdr: release {release}: took over the lock of host {socket.gethostname()} "
        f"pid {dead.pid} since {left.since.replace('T', ' ').removesuffix('+00:00')} UTC "
        f"({command}), which ended without letting go"
    ]
    assert holders(release / "state" / "release.lock") == []
    again = lsdr("ledger", "rebuild", "--release-dir", str(release))
    assert again.returncode == 0 and again.stderr == "", again.stderr  # said once, not again


def test_reprocess_holders_share_the_lock_and_keep_release_wide_writers_out(
    release: Path, started: list[Holder]
) -> None:
    """Two shared holders hold at once; an exclusive writer refuses, naming one of them."""
    first = hold(started, release, "shared", "lsdr reprocess --bricks 1804p325")
    second = hold(started, release, "shared", "lsdr reprocess --bricks 1804p327")
    assert {h.pid for h in holders(release / "state" / "release.lock")} == {first.pid, second.pid}
    done = lsdr("ledger", "rebuild", "--release-dir", str(release))
    assert done.returncode == 2
    assert f"pid {second.pid} since " in done.stderr
    assert "(lsdr reprocess --bricks 1804p327) (and 1 more): wait with --wait" in done.stderr
    first.let_go()
    second.let_go()
    assert lsdr("ledger", "rebuild", "--release-dir", str(release)).returncode == 0


def test_an_exclusive_holder_keeps_a_reprocess_request_out(
    release: Path, started: list[Holder]
) -> None:
    """A shared request (a second holder process) is refused by a release-wide holder."""
    hold(started, release)
    refused = subprocess.run(
        [sys.executable, str(HOLDER), str(release), "shared", "lsdr reprocess"],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "ReleaseLockedError: release " in refused.stderr
    assert "(lsdr run tractor --release-dir" in refused.stderr


def test_read_only_commands_run_beside_a_writer_and_write_nothing(
    release: Path, started: list[Holder]
) -> None:
    """``status``, ``server status`` and ``bricks`` need no lock and leave the tree as it was."""
    hold(started, release)
    before = tree(release)
    for args in (
        ("status", "--release-dir", str(release)),
        ("status", "--release-dir", str(release), "--phase", "tractor"),
        ("bricks", "at", "180.5", "32.5"),
    ):
        done = lsdr(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        assert "held by" not in done.stderr, args
    assert "FAILED probe u004 [science, 1 start(s)]" in lsdr("status", "-r", str(release)).stdout
    server = lsdr("server", "status", "--release-dir", str(release))
    assert server.stdout == f"no Prefect server running for {release}\n", server.stdout
    assert tree(release) == before


def test_a_process_holding_the_lock_shares_it_with_its_own_flows(tmp_path: Path) -> None:
    """Nested holds in one process (a command, then its flows) are one hold, let go once."""
    from lsdr.infra.release_lock import LockMode, held_here, release_lock

    lock = tmp_path / "state" / "release.lock"
    with release_lock(lock, "R", LockMode.EXCLUSIVE, command="lsdr run release"):
        with release_lock(lock, "R", LockMode.SHARED, command="flow run reprocess-region/x"):
            assert held_here(lock) is LockMode.EXCLUSIVE
        assert [h.command for h in holders(lock)] == ["lsdr run release"]
    assert held_here(lock) is None
    assert holders(lock) == []
    with release_lock(lock, "R", LockMode.SHARED, command="lsdr reprocess"):
        with (
            pytest.raises(RuntimeError, match="held shared here"),
            release_lock(lock, "R", LockMode.EXCLUSIVE),
        ):
            pass
        assert held_here(lock) is LockMode.SHARED
    assert holders(lock) == []


def test_two_threads_of_one_process_share_its_hold(tmp_path: Path) -> None:
    """Two flows in threads of one process both hold the release: neither refuses the other."""
    import threading

    from lsdr.infra.release_lock import LockMode, release_lock

    lock = tmp_path / "state" / "release.lock"
    inside = threading.Barrier(2, timeout=60)
    errors: list[BaseException] = []

    def hold_it() -> None:
        try:
            with release_lock(lock, "R", LockMode.EXCLUSIVE, command="a flow in a thread"):
                inside.wait()  # both are inside at once
        except BaseException as err:  # the test reads it below
            errors.append(err)

    threads = [threading.Thread(target=hold_it) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert holders(lock) == []
