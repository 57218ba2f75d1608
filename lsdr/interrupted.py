"""The end of an interrupted ``lsdr run``: the ledger told, temporary files removed, one line.

Called once the cluster is closed (its workers stopped, so nothing writes any more): the units
that were running when the grace period ended are marked ``interrupted`` (a rerun runs them;
those never started stay ``pending``), the ``tmp-<pid>-`` files their workers left are removed,
and the run exits 130 (SIGINT) or 143 (SIGTERM).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from lsdr.infra.processes import pid_alive
from lsdr.infra.release_lock import command_line

if TYPE_CHECKING:
    from lsdr.flows.interrupt import RunInterrupted
    from lsdr.infra.settings import Settings


def finish_interrupted(settings: Settings, stop: RunInterrupted) -> None:
    """Record the interrupted units, remove their temporary files, say so; exit 130 or 143."""
    from lsdr.flows.settings import ledger_for
    from lsdr.survey.core.fileio import remove_temporaries
    from lsdr.survey.core.layout import ReleaseLayout

    name = stop.interrupt.name
    ledger = ledger_for(settings)
    workers = ledger.interrupt(stop.phase, stop.keys, f"interrupted by {name}")
    layout = ReleaseLayout(settings.release_dir)
    removed = remove_temporaries(layout.root, {pid for _, pid in workers}, skip=("images",))
    rows = {r.key: r.state for r in ledger.rows(stop.phase)}
    not_started = sum(1 for k in stop.keys if rows.get(k) == "pending")
    finished = stop.finished + sum(1 for k in stop.keys if rows.get(k) in ("done", "failed"))
    cleaned = f", {len(removed)} temporary files removed" if removed else ""
    print(
        f"lsdr: interrupted by {name}: {stop.phase}: {_units(len(workers))} stopped mid-run "
        f"(interrupted), {not_started} not started, {finished} finished{cleaned}; "
        f"'{command_line()}' resumes",
        file=sys.stderr,
        flush=True,
    )
    raise SystemExit(stop.interrupt.exit_status)


KILLED_WAIT_S = 30.0
"""Most time a SIGKILLed worker may take to go (a poll's bound; it goes in milliseconds)."""


ExitCallback = Callable[
    [type[BaseException] | None, BaseException | None, TracebackType | None], bool
]


def stop_running_units(settings: Settings) -> ExitCallback:
    """An exit callback for the run's cluster: on an interrupt, kill the workers still running.

    Pushed on the cluster's ``ExitStack`` after it, so it runs before the cluster closes:
    the workers on this host (this process's children) that still run a unit the interrupt
    stopped are SIGKILLed at once, rather than given the cluster's own few seconds to close.
    Their queued batches were cancelled; Dask's restarted worker has nothing to run.
    """

    def on_exit(
        kind: type[BaseException] | None, error: BaseException | None, _tb: TracebackType | None
    ) -> bool:
        from lsdr.flows.interrupt import RunInterrupted
        from lsdr.flows.settings import ledger_for

        if not isinstance(error, RunInterrupted):
            return False
        keys = set(error.keys)
        rows = [r for r in ledger_for(settings).rows(error.phase) if r.key in keys]
        here = socket.gethostname()
        pids = {
            r.pid
            for r in rows
            if r.state == "running" and r.host == here and r.pid is not None and _our_child(r.pid)
        }
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + KILLED_WAIT_S
        while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)  # a poll: the kernel takes it down at once
        return False

    return on_exit


def _our_child(pid: int) -> bool:
    """Whether ``pid`` is a live process whose parent is this one (a local Dask worker).

    Read from ``/proc``, not ``waitpid``: the child is Dask's to reap.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z" and int(fields[1]) == os.getpid()


def _units(n: int) -> str:
    """``1 unit``, ``2 units``."""
    return f"{n} unit" if n == 1 else f"{n} units"
