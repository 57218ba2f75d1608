"""The one Prefect task every phase uses: run a batch of units on a Dask worker.

A Prefect task costs ~0.1-0.2 s on Dask (``research/prefect-measurements.md``), so a task is a
batch of units, never a single CCD.  The worker holds the batch's unit locks while it runs them
(``tasks/locks.py``: two runs of a release never run one unit at once), records the batch's
start and end in the ledger (two transactions) and each unit's provenance sidecar; a unit's
failure is a result, not an exception, so one bad image never takes its batch down.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from prefect import task

from lsdr.infra.ledger import Ledger, UnitState
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.execute import execute_unit
from lsdr.tasks.failures import INFRA, attempts_exhausted
from lsdr.tasks.locks import OnWait, unit_locks
from lsdr.tasks.sidecars import done_result
from lsdr.tasks.unit import FORCE, Unit, UnitOutput, UnitResult


def run_batch_now(
    fn: Callable[[ReleaseLayout, Unit], UnitOutput],
    units: Sequence[Unit],
    release_dir: str,
    ledger_url: str,
    engine_version: str,
    memory_limit_mb: int | None = None,
    on_wait: OnWait | None = None,
    timeout_s: float | None = None,
    max_attempts: int | None = None,
) -> list[UnitResult]:
    """Run units one after the other here, holding their locks, recording them in the ledger.

    The units' locks (``tasks/locks.py``) are taken before the ledger records their start, so
    a unit another run is running is waited for, not counted as a lost start.  A unit that had
    to wait is checked again once its lock is free: the other run may have done it (it is then
    cached here), unless it is forced.  ``timeout_s``: each unit's timeout (its phase's), past
    which it is stopped and recorded as class ``timeout`` (``tasks/deadline.py``).

    A batch Dask reruns because its worker died (Dask's own ``allowed-failures``) is checked
    against the ledger first: a unit it finished is cached, not started again, and a unit lost
    at its ``max_attempts``-th start is recorded failed (``infra``), so the ledger's count of
    starts is the one that bounds a unit, whoever resubmits it.
    """
    if not units:
        return []
    layout = ReleaseLayout(Path(release_dir))
    ledger = Ledger(ledger_url)
    phase = units[0].phase
    with unit_locks(layout, units, on_wait) as waited:
        found: dict[str, UnitResult] = {}
        rows = ledger.rows_of(phase, [u.key for u in units])
        exhausted: list[UnitResult] = []
        for unit in units:
            row = rows.get(unit.key)
            again = row is not None and row.state in (UnitState.DONE, UnitState.RUNNING)
            if (unit.key in waited or again) and not unit.flag(FORCE, False):
                done = done_result(layout, unit, engine_version)
                if done is not None:
                    found[unit.key] = done
                    continue
            lost = row is not None and row.state == UnitState.RUNNING  # its last start never ended
            if (
                lost
                and max_attempts is not None
                and row is not None
                and row.attempts >= max_attempts
            ):
                reason = f"its start {row.attempts} on {row.host}:{row.pid} never finished"
                exhausted.append(
                    UnitResult(
                        phase=phase,
                        key=unit.key,
                        state="failed",
                        failure_class=INFRA,
                        message=attempts_exhausted(phase, max_attempts, row.attempts, reason),
                        threads=unit.threads,
                    )
                )
        if found:
            ledger.mark_cached(phase, [r.ledger_finish() for r in found.values()])
        if exhausted:
            ledger.finish(phase, [r.ledger_finish() for r in exhausted])
            found.update((r.key, r) for r in exhausted)
        todo = [u for u in units if u.key not in found]
        if todo:
            ledger.start(phase, [u.key for u in todo], threads=todo[0].threads)
            ran = [
                execute_unit(
                    fn,
                    layout,
                    u,
                    engine_version,
                    memory_limit_mb=memory_limit_mb,
                    timeout_s=timeout_s,
                )
                for u in todo
            ]
            ledger.finish(phase, [r.ledger_finish() for r in ran])
            found.update((r.key, r) for r in ran)
    return [found[u.key] for u in units]


@task(name="run-units", task_run_name="{units[0].phase}-batch-{batch_number}")
def run_batch(
    fn: Callable[[ReleaseLayout, Unit], UnitOutput],
    units: list[Unit],
    release_dir: str,
    ledger_url: str,
    engine_version: str,
    memory_limit_mb: int | None = None,
    batch_number: int = 0,
    timeout_s: float | None = None,
    max_attempts: int | None = None,
) -> list[UnitResult]:
    """A Prefect task running one batch of a phase's units (see :func:`run_batch_now`).

    Each unit's start and end go to the task's log (the Prefect UI and the run's log) and, in a
    SLURM job, to the worker's own output too: the job's output file names the units it ran.
    """
    from prefect.logging import get_run_logger

    logger = get_run_logger()
    job = os.environ.get("SLURM_JOB_ID")
    where = f"{socket.gethostname()} pid {os.getpid()}" + (f" (SLURM job {job})" if job else "")

    def say(line: str, level: int = logging.INFO) -> None:
        logger.log(level, line)
        if job:
            print(line, file=sys.stderr, flush=True)

    for unit in units:
        say(f"unit {unit.phase} {unit.key}: start on {where}")

    def waiting(unit: Unit, holder: str) -> None:
        line = f"unit {unit.phase} {unit.key}: waiting for its lock, held by {holder}"
        say(line, logging.WARNING)

    results = run_batch_now(
        fn,
        units,
        release_dir,
        ledger_url,
        engine_version,
        memory_limit_mb,
        on_wait=waiting,
        timeout_s=timeout_s,
        max_attempts=max_attempts,
    )
    for r in results:
        say(f"unit {r.phase} {r.key}: {r.state}{_why(r)}")
    return results


def _why(result: UnitResult) -> str:
    """`` (class: message)`` of a failed unit, else nothing."""
    if result.state != "failed":
        return ""
    return f" ({result.failure_class}: {result.message})"
