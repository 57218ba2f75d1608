"""A run's progress on the console: a live table on a terminal, else one line per phase.

:class:`RunProgress` is the flows' progress hook (:data:`lsdr.flows.progress.ProgressHook`); it
runs in the flow's thread, in the CLI's process.  On a terminal it shows one line per phase:
units settled of the total, done, already done (cached), failed, elapsed time and an estimate of
the time left.  Without one (CI, a pipe) it prints one plain line as each phase finishes.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

if TYPE_CHECKING:
    from lsdr.flows.progress import PhaseProgress


def eta_seconds(ran: int, left: int, run_time: float, since_last: float = 0.0) -> float | None:
    """Seconds until the units ``left`` are done, at the rate of the units run so far.

    ``ran`` units finished in ``run_time`` seconds of this phase (units found already done do
    not count: they took no time); ``since_last`` seconds have passed since the last of them,
    so the estimate counts down between units.  None while no unit has run.
    """
    if left <= 0:
        return 0.0
    if ran <= 0 or run_time <= 0:
        return None
    return max(0.0, left * run_time / ran - since_last)


def format_duration(seconds: float) -> str:
    """``45s``, ``2m13s``, ``1h02m``: a duration the way a person reads it."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


@dataclass
class _Phase:
    """A phase's first and latest events and when they arrived."""

    first: PhaseProgress
    last: PhaseProgress
    started: float
    updated: float
    ended: float | None = None

    def elapsed(self, now: float) -> float:
        """Seconds from the phase's first event to its last, or to ``now`` while it runs."""
        return (self.ended if self.ended is not None else now) - self.started

    def eta(self, now: float) -> float | None:
        """Seconds left, from the units settled since the phase's first event."""
        ran = self.last.settled - self.first.settled
        left = self.last.total - self.last.settled
        return eta_seconds(ran, left, self.updated - self.started, now - self.updated)


class RunProgress:
    """The progress display of one ``lsdr run``: a live table, or plain lines as phases end.

    Use it as a context manager around the run (it starts and stops the live table) and
    register it with :func:`lsdr.flows.progress.add_progress_hook`.
    """

    def __init__(
        self,
        console: Console,
        *,
        live: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.clock = clock
        self.phases: dict[str, _Phase] = {}
        self._lock = threading.Lock()
        self._live = (
            Live(
                console=console,
                get_renderable=self._renderable,
                refresh_per_second=4,
                redirect_stdout=sys.stdout.isatty(),
                transient=False,
            )
            if live
            else None
        )

    def __enter__(self) -> RunProgress:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()

    def __call__(self, event: PhaseProgress) -> None:
        """Take a phase's new counts (the progress hook)."""
        now = self.clock()
        with self._lock:
            phase = self.phases.get(event.phase)
            if phase is None or phase.ended is not None:  # a new phase, or one run again
                self.phases.pop(event.phase, None)
                phase = self.phases[event.phase] = _Phase(event, event, now, now)
            elif event.settled != phase.last.settled:
                phase.updated = now
            phase.last = event
            if event.finished:
                phase.ended = now
        if event.finished and self._live is None:
            self.console.print(
                f"{event.summary()} ({format_duration(phase.elapsed(now))})",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )

    def _renderable(self) -> RenderableType:
        """The live display: nothing until a phase starts, then the table."""
        return self.table() if self.phases else ""

    def table(self) -> Table:
        """The live table: one row per phase."""
        now = self.clock()
        table = Table(box=None, pad_edge=False, padding=(0, 1))
        for column in ("phase", "", "units", "done", "already done", "failed", "elapsed", "left"):
            table.add_column(column, justify="left" if column == "phase" else "right")
        with self._lock:
            phases = list(self.phases.values())
        for phase in phases:
            e = phase.last
            if phase.ended is not None:
                left = "finished"
            else:
                eta = phase.eta(now)
                left = "…" if eta is None else f"~{format_duration(eta)}"
            table.add_row(
                e.phase,
                ProgressBar(
                    total=max(e.total, 1),
                    completed=e.settled if e.total else 1,
                    width=24,
                    finished_style="green",
                ),
                f"{e.settled}/{e.total}",
                str(e.done),
                str(e.cached),
                f"[red]{e.failed}[/]" if e.failed else "0",
                format_duration(phase.elapsed(now)),
                left,
            )
        return table
