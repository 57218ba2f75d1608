"""Unit locks: whoever runs a unit holds its lock, so that two runs never run one unit at once.

Two runs of one release (two ``lsdr reprocess`` processes, two Prefect flow runs) may plan the
same unit.  The worker that runs a unit first takes an exclusive ``fcntl.flock`` on
``state/locks/<phase>/<digest>.lock`` (the digest of phase and key, as the unit's sidecar), and
lets it go once the unit's sidecar and ledger row are written.  A flock belongs to the open
file, so it works between the threads of one worker, between Dask workers and between nodes
sharing the release's file system (NFS v4 locks; Lustre mounted with ``-o flock``), and the
kernel (or the NFS server, when the client's lease ends) lets go of it when its holder dies:
a lock is never left behind.

Each lock file is also the unit's history of runs: one JSON line when a holder takes it
(``acquired``: host, pid, Prefect flow run, time) and one when it lets go (``released``).  A
worker that has to wait logs who holds the lock, from that file.  No science here.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.unit import Unit

log = logging.getLogger("lsdr.tasks")


def lock_path(layout: ReleaseLayout, phase: str, key: str) -> Path:
    """Where a unit's lock lives (the key may be a path: the file is named by a digest)."""
    digest = hashlib.sha1(f"{phase}\0{key}".encode()).hexdigest()[:24]
    return layout.unit_lock(phase, digest)


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) a unit's lock, as its lock file records it."""

    host: str
    pid: int
    flow_run: str | None
    since: float

    def describe(self) -> str:
        """``host pid 123 (flow run …) since 2026-12-07 07:10:00 UTC``."""
        run = f" (flow run {self.flow_run})" if self.flow_run else ""
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        return f"{self.host} pid {self.pid}{run} since {when}"


def current_flow_run() -> str | None:
    """The id of the Prefect flow run this code runs for (in a task on a worker too), or None."""
    try:
        from prefect.runtime import flow_run

        run_id = flow_run.id
    except Exception:  # outside Prefect, or a Prefect that cannot say: the lock works without
        return None
    return str(run_id) if run_id else None


def lock_history(path: Path) -> list[dict[str, Any]]:
    """The lock file's records (``acquired``/``released`` lines), oldest first."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a holder that died while writing it
        if isinstance(record, dict):
            out.append(record)
    return out


def current_holder(path: Path) -> Holder | None:
    """The holder the lock file names: its last ``acquired`` record not followed by a release."""
    history = lock_history(path)
    if not history or history[-1].get("event") != "acquired":
        return None
    last = history[-1]
    return Holder(
        str(last.get("host")), int(last.get("pid", 0)), last.get("flow_run"), last.get("time", 0)
    )


OnWait = Callable[[Unit, str], None]
"""Told, before a worker waits for a unit's lock, the unit and who holds it."""


@contextmanager
def unit_locks(
    layout: ReleaseLayout, units: Sequence[Unit], on_wait: OnWait | None = None
) -> Iterator[set[str]]:
    """Hold the locks of ``units`` (taken in key order); yield the keys that had to wait.

    Taken in one global order, so two batches needing overlapping units never deadlock.  A
    key that had to wait was run (or is being re-checked) after another holder let go: the
    caller checks whether that holder did the unit meanwhile.
    """
    waited: set[str] = set()
    run = current_flow_run()
    with ExitStack() as stack:
        for unit in sorted(units, key=lambda u: (u.phase, u.key)):
            if _hold(stack, lock_path(layout, unit.phase, unit.key), unit, run, on_wait):
                waited.add(unit.key)
        yield waited


def _hold(
    stack: ExitStack, path: Path, unit: Unit, run: str | None, on_wait: OnWait | None
) -> bool:
    """Take a unit's lock for the stack's life (released, then closed); whether it had to wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = stack.enter_context(path.open("a"))
    waited = False
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        waited = True
        holder = current_holder(path)
        who = holder.describe() if holder is not None else "another process"
        if on_wait is not None:
            on_wait(unit, who)
        else:
            log.warning("%s %s: waiting for its lock, held by %s", unit.phase, unit.key, who)
        fcntl.flock(handle, fcntl.LOCK_EX)
    _record(handle, "acquired", unit, run)
    stack.callback(_release, handle, unit, run)
    return waited


def _release(handle: IO[str], unit: Unit, run: str | None) -> None:
    """Record the release, then let go (the file itself is closed by the stack)."""
    try:
        _record(handle, "released", unit, run)
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)


def _record(handle: IO[str], event: str, unit: Unit, run: str | None) -> None:
    """Append one history line, while holding the lock (so never two writers at once)."""
    record = {
        "event": event,
        "time": time.time(),
        "phase": unit.phase,
        "key": unit.key,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "flow_run": run,
    }
    handle.write(json.dumps(record) + "\n")
    handle.flush()
