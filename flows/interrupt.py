"""Ctrl-C and SIGTERM during a run: stop submitting, let running units finish, then stop.

The CLI's process catches SIGINT (a terminal's Ctrl-C) and SIGTERM (what SLURM sends before
it kills a job) with :func:`handling_signals`; the handler only records the request.  The
runner (``flows/runner.py``) then submits nothing more, waits for the running batches up to the
grace period (a second signal ends the wait at once), and raises :class:`RunInterrupted`
naming the units that did not finish.  The Dask workers start with both signals blocked
(``infra/processes.signals_blocked``): a terminal sends Ctrl-C to its whole foreground process
group and SLURM its SIGTERM to every process of the job step, but only the CLI decides.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from lsdr.infra.processes import STOP_SIGNALS

if TYPE_CHECKING:
    from lsdr.infra.ledger import Ledger
    from lsdr.tasks.unit import Unit

log = logging.getLogger("lsdr.flows")

SIGNALS = STOP_SIGNALS
"""The signals that interrupt a run."""

EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}
"""The shell's convention: 128 + the signal's number."""

POLL_S = 0.5
"""How often the runner, waiting on its batches, looks for an interrupt (a poll, not a cost)."""


@dataclass(frozen=True)
class Interrupt:
    """An interrupt asked for: by which signal, and until when running units may finish."""

    signum: int
    deadline: float
    """``time.monotonic()`` after which the units still running are stopped."""
    count: int = 1

    @property
    def name(self) -> str:
        """``SIGINT`` or ``SIGTERM``."""
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        """130 for SIGINT, 143 for SIGTERM."""
        return EXIT_STATUS.get(signal.Signals(self.signum), 128 + self.signum)


class RunInterrupted(Exception):  # noqa: N818 (it is the outcome, not an error)
    """A phase stopped by an interrupt: the units of it that did not finish.

    Raised out of the runner and the flows to the CLI, which closes the cluster (stopping the
    workers), then marks the units that were running ``interrupted`` in the ledger.
    """

    def __init__(self, phase: str, keys: list[str], finished: int, interrupt: Interrupt) -> None:
        """The phase, the keys of its unfinished units, how many finished, the interrupt."""
        super().__init__(
            f"{phase}: interrupted by {interrupt.name}: {len(keys)} units did not finish"
        )
        self.phase, self.keys, self.finished, self.interrupt = phase, keys, finished, interrupt


_state: Interrupt | None = None
_guard = threading.Lock()


def request(signum: int, grace_s: float) -> Interrupt:
    """Record an interrupt; a second one ends the grace period now; a third exits at once."""
    global _state
    with _guard:
        now = time.monotonic()
        if _state is None:
            _state = Interrupt(signum, now + grace_s)
        else:
            _state = Interrupt(_state.signum, min(_state.deadline, now), _state.count + 1)
        return _state


def requested() -> Interrupt | None:
    """The interrupt asked for in this process, or None."""
    return _state


def reset() -> None:
    """Forget an interrupt (a process that runs again, such as a test's)."""
    global _state
    with _guard:
        _state = None


@contextmanager
def handling_signals(grace_s: float) -> Iterator[None]:
    """Catch SIGINT and SIGTERM in this (main) thread while the block runs; restore them after.

    The first signal asks for an interrupt with ``grace_s`` seconds for the running units, the
    second ends that wait, the third exits at once (``os._exit``: as ``kill -9`` would, it may
    leave ``running`` rows for ``lsdr recover``).
    """

    global _handler

    def handler(signum: int, _frame: FrameType | None) -> None:
        asked = request(signum, grace_s)
        if asked.count >= 3:
            os._exit(asked.exit_status)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    _handler = handler
    try:
        yield
    finally:
        _handler = None
        for s, old in previous.items():
            signal.signal(s, old)
        _unbridge_prefect()


_handler: Any = None
"""The handler :func:`handling_signals` installed, while it is installed."""
_prefect_handler: Any = None
"""Prefect's own SIGTERM handler, while :func:`bridge_prefect` has replaced it."""


def bridge_prefect() -> None:
    """Let the flows Prefect runs in this process keep :func:`handling_signals`' SIGTERM handler.

    A Prefect flow run installs its own SIGTERM handler while it runs, which raises
    ``TerminationSignal`` wherever the flow is (its runner's way to cancel a deployment's run
    in a process of its own).  In ``lsdr run`` the flows run in the command's process, which
    stops them itself; so Prefect's bridge is pointed at the command's handler.  Call it once
    Prefect is imported (after :func:`lsdr.runlog.route_logs`).
    """
    global _prefect_handler
    import prefect.utilities.engine as engine

    if _handler is None or _prefect_handler is not None:
        return
    _prefect_handler = engine._prefect_sigterm_handler
    engine._prefect_sigterm_handler = _handler


def _unbridge_prefect() -> None:
    """Give Prefect its own SIGTERM handler back."""
    global _prefect_handler
    if _prefect_handler is None:
        return
    import prefect.utilities.engine as engine

    engine._prefect_sigterm_handler = _prefect_handler
    _prefect_handler = None


def completing(
    phase: str,
    futures: Mapping[Any, Sequence[Unit]],
    todo: Sequence[Unit],
    results: Sized,
    ledger: Ledger,
) -> Iterator[Any]:
    """Yield a phase's Prefect futures as they complete, as ``prefect.futures.as_completed``.

    ``futures`` maps each future to its batch of units.  Once an interrupt is asked for, the
    batches none of whose units the ledger has ``running`` are cancelled (they never start);
    those running that complete before the deadline are still yielded; then the rest are
    cancelled too, and :class:`RunInterrupted` names the units of every cancelled batch and
    those of ``todo`` (the units the runner meant to resubmit), with ``len(results)`` finished.
    A unit that a worker started as its batch was cancelled is among them: it is running (then
    interrupted) or finished, as the ledger says.
    """
    pending = set(futures)
    finished: queue.SimpleQueue[Any] = queue.SimpleQueue()
    for future in pending:
        future.add_done_callback(finished.put)
    cancelled: list[Any] = []
    said = False
    while pending:
        asked = requested()
        if asked is not None and not said:
            said = True
            running = {r.key for r in ledger.rows(phase) if r.state == "running"}
            queued = [f for f in pending if not any(u.key in running for u in futures[f])]
            _cancel(queued)
            pending.difference_update(queued)
            cancelled.extend(queued)
            log.warning(
                "%s: %s: no more units start; waiting up to %.0f s for the running ones "
                "(%d %s; again to stop them now)",
                phase,
                asked.name,
                max(0.0, asked.deadline - time.monotonic()),
                len(pending),
                "batch" if len(pending) == 1 else "batches",
            )
        if asked is not None and time.monotonic() >= asked.deadline:
            _cancel(pending)
            cancelled.extend(pending)
            break
        try:
            future = finished.get(timeout=POLL_S)
        except queue.Empty:
            continue
        if future in pending:
            pending.remove(future)
            yield future
    asked = requested()
    if cancelled and asked is not None:
        keys = [u.key for f in cancelled for u in futures[f]] + [u.key for u in todo]
        raise RunInterrupted(phase, keys, len(results), asked)


def _cancel(futures: Iterable[Any]) -> None:
    """Cancel Prefect futures' Dask futures: queued, they never start, not even on a new worker.

    A batch already running goes on in its worker's thread, whose process is then stopped.
    """
    for future in futures:
        cancel = getattr(getattr(future, "wrapped_future", None), "cancel", None)
        if cancel is not None:
            cancel()


def stop_if_asked(phase: str, keys: list[str], finished: int) -> None:
    """Raise :class:`RunInterrupted` for ``keys`` if an interrupt was asked for."""
    asked = requested()
    if asked is not None:
        raise RunInterrupted(phase, keys, finished, asked)


def quiet_on_console(record: logging.LogRecord) -> bool:
    """Whether to keep a log record off the console because the run is being interrupted.

    Once an interrupt is asked for: Dask's records of the workers it stops, and Prefect's
    record (with its traceback) of the flow that :class:`RunInterrupted` ended; the run says
    what happened in one line (the log file keeps them).
    """
    if _state is None:
        return False
    if record.name.startswith("distributed"):
        return True
    error = record.exc_info[1] if record.exc_info else None
    return isinstance(error, RunInterrupted) or "RunInterrupted" in str(record.msg)
