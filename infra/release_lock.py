"""The release lock: one writer of a release at a time, or several reprocess requests.

Every command and flow that writes a release holds ``state/release.lock`` while it runs: an
``fcntl.flock``, exclusive for a whole-release writer (``lsdr run <phase>``, ``release``,
``nightly``, ``retry``, ``ledger rebuild``), shared for a ``reprocess-region`` run, so that
reprocess requests run side by side (their unit locks, ``tasks/locks.py``, keep them off each
other's units) but never beside a release-wide run.  A second writer refuses with one line
naming the holder (:class:`ReleaseLockedError`), or waits when asked.

The file is also the holders' record: one JSON line when a holder takes the lock (host, pid,
start time, command line, mode) and one when it lets go.  An exclusive holder starts the file
afresh; shared holders append.  The kernel lets go of a flock when its holder dies, so a lock is
never left behind; the record it leaves (taken, never let go) is how the next holder says whose
lock it took over.  Within one process the lock is re-entrant: the flows a command runs see it
held already.  Read-only commands take no lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO

from lsdr.infra.errors import InfraError
from lsdr.infra.processes import pid_alive


class LockMode(StrEnum):
    """How a writer holds the release: alone, or beside other shared holders."""

    EXCLUSIVE = "exclusive"
    """Whole-release writers: nothing else writes the release meanwhile."""
    SHARED = "shared"
    """``reprocess-region`` runs: beside each other, never beside an exclusive holder."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or held) the release lock, as its record in the lock file says."""

    host: str
    pid: int
    since: str
    """When it took the lock (UTC, ISO 8601)."""
    command: str
    mode: str = LockMode.EXCLUSIVE.value

    def describe(self) -> str:
        """``host H pid P since 2026-12-07 12:00:00 UTC (lsdr run tractor …)``."""
        when = self.since.replace("T", " ").removesuffix("+00:00")
        return f"host {self.host} pid {self.pid} since {when} UTC ({self.command})"

    def dead(self) -> bool:
        """Whether the holder is known to be gone: on this host, its pid no longer lives."""
        return self.host == socket.gethostname() and not pid_alive(self.pid)


class ReleaseLockedError(InfraError):
    """Another writer holds the release: the message names it and what to do."""


Say = Callable[[str], None]
"""Where the lock's one-line notices go (waiting, taking over a dead holder's lock)."""


def command_line() -> str:
    """The process's command as typed: ``lsdr run tractor --release-dir R``."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("lsdr", "__main__.py"):
        argv[0] = "lsdr"
    return shlex.join(argv)


@dataclass
class _Held:
    """A lock this process holds: its open file, mode, record and how many hold it here."""

    handle: IO[str]
    mode: LockMode
    holder: LockHolder
    count: int = 1


_HELD: dict[Path, _Held] = {}
_GUARD = threading.Lock()
"""Guards ``_HELD`` (held briefly)."""
_ACQUIRING = threading.Lock()
"""Held while this process takes a flock (or waits for one): one acquisition at a time."""


def holders(path: Path) -> list[LockHolder]:
    """The holders the lock file records as not having let go, oldest first."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    return _open_records(lines)


def _open_records(lines: list[str]) -> list[LockHolder]:
    """The ``acquired`` records of ``lines`` without a later ``released`` of the same holder."""
    taken: dict[tuple[str, int, str], LockHolder] = {}
    for line in lines:
        try:
            record = json.loads(line)
            holder = LockHolder(
                str(record["host"]),
                int(record["pid"]),
                str(record["since"]),
                str(record.get("command", "")),
                str(record.get("mode", LockMode.EXCLUSIVE.value)),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # a line cut short by a holder that died while writing it
        ident = (holder.host, holder.pid, holder.since)
        if record.get("event") == "released":
            taken.pop(ident, None)
        else:
            taken[ident] = holder
    return list(taken.values())


def held_here(path: Path) -> LockMode | None:
    """The mode this process holds the lock at ``path`` in, or None."""
    with _GUARD:
        held = _HELD.get(path.absolute())
        return None if held is None else held.mode


@contextmanager
def release_lock(
    path: Path,
    release: str,
    mode: LockMode,
    *,
    wait: bool = False,
    command: str | None = None,
    say: Say | None = None,
) -> Iterator[LockHolder]:
    """Hold the release lock at ``path`` in ``mode`` for the block; yield this holder's record.

    Refuses (:class:`ReleaseLockedError`, naming the holder) when another writer holds it,
    unless ``wait``: then says once whom it waits for and waits.  Says so when it takes over
    the lock of a holder that died.  Re-entrant in one process: an inner holder of a lock held
    already (exclusive, or shared for a shared request) shares it.
    """
    key = path.absolute()
    with _ACQUIRING:  # two threads of this process never both take the flock
        with _GUARD:
            held = _HELD.get(key)
            if held is not None:
                if mode is LockMode.EXCLUSIVE and held.mode is LockMode.SHARED:
                    raise RuntimeError(f"{path}: held shared here; an exclusive hold cannot nest")
                held.count += 1
        if held is None:
            held = _acquire(path, release, mode, wait, command or command_line(), say or _stderr)
            with _GUARD:
                _HELD[key] = held
    try:
        yield held.holder
    finally:
        with _GUARD:
            held.count -= 1
            last = held.count == 0
            if last:
                _HELD.pop(key, None)
        if last:  # the process's last hold ends: the lock goes
            _release(held)


@contextmanager
def ensure_release_lock(
    path: Path,
    release: str,
    *,
    wait: bool = False,
    command: str | None = None,
    say: Say | None = None,
) -> Iterator[LockHolder]:
    """The lock as this process holds it already (either mode), else taken exclusive."""
    mode = held_here(path) or LockMode.EXCLUSIVE
    with release_lock(path, release, mode, wait=wait, command=command, say=say) as holder:
        yield holder


def _stderr(line: str) -> None:
    print(f"lsdr: {line}", file=sys.stderr, flush=True)


def _acquire(path: Path, release: str, mode: LockMode, wait: bool, command: str, say: Say) -> _Held:
    """Take the flock (refusing, or waiting, for a live holder); record this holder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    flag = fcntl.LOCK_EX if mode is LockMode.EXCLUSIVE else fcntl.LOCK_SH
    try:
        try:
            fcntl.flock(handle, flag | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _live_holder_line(path)
            if not wait:
                raise ReleaseLockedError(
                    f"release {release} is held by {who}: wait with --wait, or stop it"
                ) from None
            say(f"release {release} is held by {who}: waiting for it to let go")
            fcntl.flock(handle, flag)
        handle.seek(0)
        stale = [h for h in _open_records(handle.read().splitlines()) if _stale(h, mode)]
        for gone in stale:
            say(
                f"release {release}: took over the lock of {gone.describe()}, "
                "which ended without letting go"
            )
        holder = LockHolder(
            socket.gethostname(),
            os.getpid(),
            datetime.now(UTC).isoformat(timespec="seconds"),
            command,
            mode.value,
        )
        if mode is LockMode.EXCLUSIVE:
            handle.truncate(0)  # the only holder: the stale records go
        else:
            for gone in stale:
                _write(handle, "released", gone)  # closed for it: no one names it again
        _write(handle, "acquired", holder)
    except BaseException:
        handle.close()
        raise
    return _Held(handle, mode, holder)


def _stale(record: LockHolder, mode: LockMode) -> bool:
    """Whether a record, read once the lock is ours in ``mode``, is of a holder that is gone.

    Exclusive: every record is (no one else holds the lock).  Shared: an exclusive holder's
    (it cannot hold beside us), and a shared holder's whose pid on this host is gone.
    """
    if mode is LockMode.EXCLUSIVE or record.mode == LockMode.EXCLUSIVE.value:
        return True
    return record.dead()


def _live_holder_line(path: Path) -> str:
    """The holder a refusal names (the latest not known dead), or "another process"."""
    live = [h for h in holders(path) if not h.dead()]
    if not live:
        return "another process"
    more = f" (and {len(live) - 1} more)" if len(live) > 1 else ""
    return live[-1].describe() + more


def _write(handle: IO[str], event: str, holder: LockHolder) -> None:
    """Append one record line (while holding the lock)."""
    handle.write(json.dumps({"event": event, **asdict(holder)}) + "\n")
    handle.flush()


def _release(held: _Held) -> None:
    """Record the release, then let go and close."""
    try:
        _write(held.handle, "released", held.holder)
    finally:
        fcntl.flock(held.handle, fcntl.LOCK_UN)
        held.handle.close()
