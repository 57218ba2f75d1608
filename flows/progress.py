"""Progress of a phase's units, for displays: the event, and the hooks that receive it.

A phase sends a :class:`PhaseProgress` when it starts, as its units finish and at its end, to
every registered hook (the CLI's progress display), in the flow's thread.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from lsdr.tasks.unit import UnitResult

log = logging.getLogger("lsdr.flows")


@dataclass(frozen=True)
class PhaseProgress:
    """Where a phase's units stand: sent when the phase starts, as units finish, and at its end.

    The first event of a phase already counts the units a rerun skips (``cached``), so a
    display can tell the units this run ran from those it found done.
    """

    phase: str
    total: int
    """Units in the phase."""
    done: int = 0
    """Units run to completion in this run."""
    cached: int = 0
    """Units found already done (not run again)."""
    failed: int = 0
    """Units that failed (in this run, or recorded as failed with the same inputs)."""
    finished: bool = False
    """True on the phase's last event: every unit is settled."""

    @property
    def settled(self) -> int:
        """Units with an outcome: done, already done or failed."""
        return self.done + self.cached + self.failed

    def summary(self) -> str:
        """One line: ``phase: N units: a done, b already done, c failed``."""
        return (
            f"{self.phase}: {self.total} units: {self.done} done, "
            f"{self.cached} already done, {self.failed} failed"
        )


ProgressHook = Callable[[PhaseProgress], None]
"""Called in the flow's thread (the CLI's process) each time a phase's counts change."""

_progress_hooks: list[ProgressHook] = []


def add_progress_hook(hook: ProgressHook) -> None:
    """Register a progress display (the CLI's :class:`lsdr.console.RunProgress`)."""
    _progress_hooks.append(hook)


def remove_progress_hook(hook: ProgressHook) -> None:
    """Unregister a progress display."""
    if hook in _progress_hooks:
        _progress_hooks.remove(hook)


def phase_progress(
    phase: str, results: Iterable[UnitResult], total: int, finished: bool = False
) -> PhaseProgress:
    """The progress event for a phase's settled results."""
    states = Counter(r.state for r in results)
    return PhaseProgress(phase, total, states["done"], states["cached"], states["failed"], finished)


def report_progress(event: PhaseProgress) -> None:
    """Send a progress event to every registered display; a failing display is logged."""
    for hook in list(_progress_hooks):
        try:
            hook(event)
        except Exception as err:  # a display is a view; never fail a phase for one
            log.warning("progress display failed: %s", err)
