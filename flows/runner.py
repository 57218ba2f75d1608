"""How every phase flow runs its units: plan, skip what is done, submit batches, apply policy.

The flow thread does the cheap things (fingerprints, sidecar checks, ledger planning) and
submits only stale units, in batches (``flows/batching.py``), to the Dask task runner; a failed
unit or a lost batch goes to the failure policy (``flows/retry_policy.py``).  Progress goes to
the displays (``flows/progress.py``) and to Prefect artifacts (``flows/artifacts.py``); the
result is a :class:`~lsdr.flows.report.PhaseReport`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from contextlib import nullcontext
from functools import partial
from typing import Any

from lsdr.flows.artifacts import PhaseArtifacts, show_cached
from lsdr.flows.batching import batch_size_for, batches, memory_capacity_mb, memory_request
from lsdr.flows.interrupt import completing, stop_if_asked
from lsdr.flows.progress import phase_progress, report_progress
from lsdr.flows.report import PhaseReport
from lsdr.flows.retry_policy import TimeoutPolicy, after_lost_batch, resubmission
from lsdr.flows.settings import ledger_for, writing_units
from lsdr.flows.space_policy import wait_for_space
from lsdr.infra.ledger import Ledger
from lsdr.infra.settings import Settings
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.engines.registry import engine_config
from lsdr.tasks.sidecars import settle
from lsdr.tasks.unit import FORCE, Unit, UnitOutput, UnitResult, engine_version, on_engine

log = logging.getLogger("lsdr.flows")


def run_units(
    phase: str,
    fn: Callable[[ReleaseLayout, Unit], UnitOutput],
    units: Sequence[Unit],
    settings: Settings,
    *,
    on_timeout: TimeoutPolicy | None = None,
    batch_size: int | None = None,
    force: Collection[str] = (),
) -> PhaseReport:
    """Run a phase's units through the current flow's task runner; return every result.

    Must be called inside a flow (it submits :func:`lsdr.tasks.batch.run_batch`).
    ``on_timeout`` is the phase's timeout policy (bricks: rerun from the checkpoint with
    ``--bail-out``); without one a timeout is a recorded failure.  ``batch_size`` fixes the
    units per Prefect task (bricks: 1, each brick its own task) instead of
    :func:`batch_size_for`.  Units with a memory estimate ask their worker for that much of
    its ``MEMORY_MB`` resource.  Units whose key is in ``force`` run even when done (or failed
    before with the same inputs): a forced rerun, recorded as one in sidecar and ledger.

    Every unit of every flow passes here, so here the release's lock is checked: held by this
    process already (the command or flow that runs the phase took it), or else taken.
    """
    with writing_units(settings):
        return _run_units(
            phase, fn, units, settings, on_timeout=on_timeout, batch_size=batch_size, force=force
        )


def _run_units(
    phase: str,
    fn: Callable[[ReleaseLayout, Unit], UnitOutput],
    units: Sequence[Unit],
    settings: Settings,
    *,
    on_timeout: TimeoutPolicy | None,
    batch_size: int | None,
    force: Collection[str],
) -> PhaseReport:
    """:func:`run_units`, the release's lock held."""
    from dask.base import annotate

    from lsdr.tasks.batch import run_batch, run_batch_now

    layout = ReleaseLayout(settings.release_dir)
    ledger = ledger_for(settings)
    config = engine_config(settings.engine, settings)
    version = engine_version(settings.engine, config)
    units = on_engine(units, settings.engine, config)
    ledger.plan(phase, [u.key for u in units])

    results: dict[str, UnitResult] = {}
    todo: list[Unit] = []
    forced = set(force)
    for unit in units:
        settled = settle(layout, unit, version)
        if unit.key in forced:
            todo.append(settled.unit.with_flag(FORCE, True))
        elif settled.result is None:
            todo.append(settled.unit)
        else:
            results[unit.key] = settled.result
    if results:
        ledger.mark_cached(phase, [r.ledger_finish() for r in results.values()])
        show_cached(phase, [r for r in results.values() if r.state == "cached"])
    unplannable = [u for u in todo if u.plan_error is not None]
    if unplannable:
        # A bad input file found in planning: recorded here (sidecar, ledger), never sent to Dask.
        todo = [u for u in todo if u.plan_error is None]
        release_dir = str(settings.release_dir)
        for r in run_batch_now(fn, unplannable, release_dir, ledger.url, version):
            results[r.key] = r
    log.info("%s: %d units, %d already done, %d to run", phase, len(units), len(results), len(todo))

    artifacts = PhaseArtifacts(phase, len(units))
    report_progress(phase_progress(phase, results.values(), len(units)))
    artifacts.update(len(results))

    number = 0
    lost: dict[str, int] = {}
    capacity = memory_capacity_mb() if any(u.memory_mb for u in todo) else None
    while todo:
        stop_if_asked(phase, [u.key for u in todo], len(results))  # Ctrl-C: submit no more
        futures: dict[Any, list[Unit]] = {}
        for batch in batches(todo, batch_size or batch_size_for(len(todo), settings)):
            number += 1
            request = memory_request(batch, capacity)
            with annotate(resources=request) if request else nullcontext():
                future = run_batch.submit(
                    fn,
                    batch,
                    str(settings.release_dir),
                    ledger.url,
                    version,
                    settings.unit_memory_limit_mb,
                    batch_number=number,
                    timeout_s=settings.timeouts.get(phase),
                    max_attempts=settings.max_attempts,
                )
            futures[future] = batch
        todo = []
        short: list[tuple[Unit, UnitResult]] = []  # their file system was full
        for future in completing(phase, futures, todo, results, ledger):  # Ctrl-C: stops
            batch = futures[future]
            try:
                batch_results: list[UnitResult] = future.result()
            except Exception as err:
                for unit in batch:
                    lost[unit.key] = lost.get(unit.key, 0) + 1
                todo.extend(after_lost_batch(phase, batch, err, ledger, settings, results, lost))
            else:
                for r in batch_results:
                    if r.no_space is not None:
                        short.append((next(u for u in batch if u.key == r.key), r))
                        continue
                    retry = resubmission(
                        phase,
                        r,
                        batch,
                        on_timeout,
                        partial(_starts, ledger, phase, r.key),
                        settings.max_attempts,
                    )
                    if retry is not None:
                        todo.append(retry)
                    else:
                        results[r.key] = r
            report_progress(phase_progress(phase, results.values(), len(units)))
            artifacts.update(len(results))
        if short:
            again, failed = wait_for_space(
                phase, short, settings, ledger, partial(_starts, ledger, phase)
            )
            todo.extend(again)
            results.update((r.key, r) for r in failed)

    report = PhaseReport(phase, [results[u.key] for u in units])
    report_progress(phase_progress(phase, report.results, len(units), finished=True))
    for r in report.failed:
        log.error("%s %s failed (%s): %s", phase, r.key, r.failure_class, r.message)
    log.info(report.summary_line())
    artifacts.table(report)
    return report


def _starts(ledger: Ledger, phase: str, key: str) -> int:
    """How often the ledger saw a unit start."""
    row = ledger.get(phase, key)
    return row.attempts if row is not None else 0


def run_then_merge(
    parts: tuple[str, Callable[[ReleaseLayout, Unit], UnitOutput], Sequence[Unit]],
    merge: tuple[
        str,
        Callable[[ReleaseLayout, Unit], UnitOutput],
        Callable[[list[UnitResult]], list[Unit]],
    ],
    settings: Settings,
    force: Collection[str] = (),
) -> list[PhaseReport]:
    """Run a phase's partial units, then its merge unit over the partials that finished.

    ``parts`` is (phase, unit function, units); ``merge`` is (phase, unit function, planner
    taking the finished partial units).  No merge when no partial finished.  ``force``: keys
    of partial units to rerun even when done; the merge reruns when what it reads changed.
    """
    phase, fn, units = parts
    first = run_units(phase, fn, units, settings, force=force)
    partials = [r for r in first.results if r.state != "failed"]
    if not partials:
        return [first]
    merge_phase, merge_fn, plan_merge = merge
    return [first, run_units(merge_phase, merge_fn, plan_merge(partials), settings)]
