"""A phase in the Prefect UI: its progress artifact, its units table, its found-done units.

Artifacts are a view: outside a flow run, or once the run's Prefect server has gone away
(``infra/server_watch.py``), nothing is shown, and a failure to show one is logged, never a
failure of the phase.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from lsdr.flows.report import PhaseReport
from lsdr.infra.server_watch import server_lost
from lsdr.tasks.unit import UnitResult

log = logging.getLogger("lsdr.flows")


class PhaseArtifacts:
    """The phase's progress artifact and final table, when running inside a flow run."""

    def __init__(self, phase: str, total: int) -> None:
        self.phase, self.total = phase, total
        self.id: UUID | None = None
        try:
            from prefect.artifacts import create_progress_artifact
            from prefect.context import FlowRunContext

            if FlowRunContext.get() is not None and not server_lost():
                created = create_progress_artifact(
                    progress=0.0, description=f"{phase}: units finished of {total}"
                )
                self.id = created if isinstance(created, UUID) else None
        except Exception as err:  # artifacts are a view; never fail a phase for one
            log.warning("could not create the progress artifact: %s", err)

    def update(self, finished: int) -> None:
        """Show ``finished`` units of the total in the progress artifact."""
        if self.id is None or self.total == 0 or server_lost():
            return
        try:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(self.id, progress=100.0 * finished / self.total)
        except Exception as err:
            log.warning("could not update the progress artifact: %s", err)

    def table(self, report: PhaseReport) -> None:
        """The table artifacts of a finished phase: units by state, and the failed units."""
        try:
            from prefect.artifacts import create_table_artifact
            from prefect.context import FlowRunContext

            if FlowRunContext.get() is None or server_lost():
                return
            rows: list[dict[str, Any]] = [
                {"state": s, "units": n} for s, n in report.counts().items()
            ]
            create_table_artifact(
                rows, key=f"{_artifact_key(report.phase)}-units", description=report.summary_line()
            )
            if report.failed:
                create_table_artifact(
                    [
                        {"unit": r.key, "class": r.failure_class, "reason": r.message}
                        for r in report.failed[:500]
                    ],
                    key=f"{_artifact_key(report.phase)}-failed",
                    description=f"{report.phase}: failed units (first 500)",
                )
        except Exception as err:
            log.warning("could not create the units table artifact: %s", err)


CACHED_LISTED = 500
"""Most found-done units the cached-units table artifact lists by name."""


def show_cached(phase: str, cached: Sequence[UnitResult]) -> None:
    """Show the units a phase found done as one Prefect task run in state Cached, with why.

    They are never submitted (a task run per unit would cost more than the rerun saves at
    300,000 bricks), so one task run ``<phase>-already-done`` stands for them, its message
    giving the count and the reasons, with a table artifact naming each unit and its reason.
    Outside a flow run nothing is shown.
    """
    if not cached:
        return
    try:
        from prefect.context import FlowRunContext

        if FlowRunContext.get() is None or server_lost():
            return
        reasons = Counter(r.message or "" for r in cached)
        message = f"{len(cached)} units already done: " + "; ".join(
            f"{n} {reason}" for reason, n in reasons.most_common()
        )
        rows = [{"unit": r.key, "reason": r.message} for r in cached[:CACHED_LISTED]]
        already_done(phase, message, rows)
    except Exception as err:  # a view; never fail a phase for one
        log.warning("could not show the cached units in Prefect: %s", err)


def _already_done(phase: str, message: str, rows: list[dict[str, Any]]) -> Any:
    """The task run standing for a phase's found-done units: state Cached, with the reason."""
    from prefect.artifacts import create_table_artifact
    from prefect.states import Completed

    create_table_artifact(
        rows, key=f"{_artifact_key(phase)}-cached", description=f"{phase}: {message}"[:2000]
    )
    return Completed(name="Cached", message=message)


def _cached_task() -> Any:
    from prefect import task

    return task(name="units-already-done", task_run_name="{phase}-already-done")(_already_done)


def already_done(phase: str, message: str, rows: list[dict[str, Any]]) -> None:
    """Run the found-done task in the current flow (see :func:`show_cached`)."""
    _cached_task()(phase, message, rows)


def _artifact_key(phase: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in phase.lower())
