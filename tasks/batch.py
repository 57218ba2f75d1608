"""The one Prefect task every phase uses: run a batch of units on a Dask worker.

A Prefect task costs ~0.1-0.2 s on Dask (``research/prefect-measurements.md``), so a task is a
batch of units, never a single CCD.  The worker records the batch's start and end in the
ledger (two transactions) and each unit's provenance sidecar; a unit's failure is a result,
not an exception, so one bad image never takes its batch down.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from prefect import task

from lsdr.infra.ledger import Ledger
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.execute import execute_unit
from lsdr.tasks.unit import Unit, UnitOutput, UnitResult


def run_batch_now(
    fn: Callable[[ReleaseLayout, Unit], UnitOutput],
    units: Sequence[Unit],
    release_dir: str,
    ledger_url: str,
    engine_version: str,
    memory_limit_mb: int | None = None,
) -> list[UnitResult]:
    """Run units one after the other here, recording start and end in the ledger."""
    if not units:
        return []
    layout = ReleaseLayout(Path(release_dir))
    ledger = Ledger(ledger_url)
    phase = units[0].phase
    ledger.start(phase, [u.key for u in units], threads=units[0].threads)
    results = [
        execute_unit(fn, layout, u, engine_version, memory_limit_mb=memory_limit_mb) for u in units
    ]
    ledger.finish(phase, [r.ledger_finish() for r in results])
    return results


@task(name="run-units", task_run_name="{units[0].phase}-batch-{batch_number}")
def run_batch(
    fn: Callable[[ReleaseLayout, Unit], UnitOutput],
    units: list[Unit],
    release_dir: str,
    ledger_url: str,
    engine_version: str,
    memory_limit_mb: int | None = None,
    batch_number: int = 0,
) -> list[UnitResult]:
    """A Prefect task running one batch of a phase's units (see :func:`run_batch_now`).

    Each unit's start and end go to the task's log (the Prefect UI and the run's log) and, in a
    SLURM job, to the worker's own output too: the job's output file names the units it ran.
    """
    from prefect.logging import get_run_logger

    logger = get_run_logger()
    job = os.environ.get("SLURM_JOB_ID")
    where = f"{socket.gethostname()} pid {os.getpid()}" + (f" (SLURM job {job})" if job else "")

    def say(line: str) -> None:
        logger.info(line)
        if job:
            print(line, file=sys.stderr, flush=True)

    for unit in units:
        say(f"unit {unit.phase} {unit.key}: start on {where}")
    results = run_batch_now(fn, units, release_dir, ledger_url, engine_version, memory_limit_mb)
    for r in results:
        say(f"unit {r.phase} {r.key}: {r.state}{_why(r)}")
    return results


def _why(result: UnitResult) -> str:
    """`` (class: message)`` of a failed unit, else nothing."""
    if result.state != "failed":
        return ""
    return f" ({result.failure_class}: {result.message})"
