"""How every phase flow runs its units: plan, skip what is done, submit batches, apply policy.

The flow thread does the cheap things (fingerprints, sidecar checks, ledger planning) and
submits only stale units, in batches, to the Dask task runner.  Failure policy
(``docs/orchestration.md``): a lost worker (``KilledWorker`` after Dask's own re-runs) or other
infrastructure error → the batch's unfinished units are resubmitted until a unit has been
started ``max_attempts`` times; ``oom`` → the unit is resubmitted with half its threads, down to
one; ``science``/``usage``/``timeout`` → recorded, reported, never blindly retried.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from lsdr.infra.cluster import MEMORY_RESOURCE
from lsdr.infra.ledger import Ledger, UnitFinish, default_url
from lsdr.infra.settings import Settings
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.units import (
    Unit,
    UnitOutput,
    UnitResult,
    batches,
    engine_version,
    last_failure,
    on_engine,
    settle,
)

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


def _progress(
    phase: str, results: Iterable[UnitResult], total: int, finished: bool = False
) -> PhaseProgress:
    """The progress event for a phase's settled results."""
    states = Counter(r.state for r in results)
    return PhaseProgress(phase, total, states["done"], states["cached"], states["failed"], finished)


def _report_progress(event: PhaseProgress) -> None:
    for hook in list(_progress_hooks):
        try:
            hook(event)
        except Exception as err:  # a display is a view; never fail a phase for one
            log.warning("progress display failed: %s", err)


def ledger_for(settings: Settings) -> Ledger:
    """The ledger the settings name (default: the release's ``state/ledger.sqlite``)."""
    layout = ReleaseLayout(settings.release_dir)
    return Ledger(settings.ledger_url or default_url(layout.state_dir))


@dataclass
class PhaseReport:
    """What a phase did: one result per unit, in plan order."""

    phase: str
    results: list[UnitResult] = field(default_factory=list)

    def by_state(self, state: str) -> list[UnitResult]:
        """Results in one state (done, cached, failed)."""
        return [r for r in self.results if r.state == state]

    @property
    def failed(self) -> list[UnitResult]:
        """Units that failed."""
        return self.by_state("failed")

    @property
    def ok(self) -> bool:
        """True when no unit failed."""
        return not self.failed

    def counts(self) -> dict[str, int]:
        """Units by state."""
        out = {"done": 0, "cached": 0, "failed": 0}
        for r in self.results:
            out[r.state] = out.get(r.state, 0) + 1
        return out

    def summary_line(self) -> str:
        """One line for logs and the terminal."""
        return _progress(self.phase, self.results, len(self.results), finished=True).summary()


class _Artifacts:
    """The phase's progress artifact and final table, when running inside a flow run."""

    def __init__(self, phase: str, total: int) -> None:
        self.phase, self.total = phase, total
        self.id: UUID | None = None
        try:
            from prefect.artifacts import create_progress_artifact
            from prefect.context import FlowRunContext

            if FlowRunContext.get() is not None:
                created = create_progress_artifact(
                    progress=0.0, description=f"{phase}: units finished of {total}"
                )
                self.id = created if isinstance(created, UUID) else None
        except Exception as err:  # artifacts are a view; never fail a phase for one
            log.warning("could not create the progress artifact: %s", err)

    def update(self, finished: int) -> None:
        if self.id is None or self.total == 0:
            return
        try:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(self.id, progress=100.0 * finished / self.total)
        except Exception as err:
            log.warning("could not update the progress artifact: %s", err)

    def table(self, report: PhaseReport) -> None:
        try:
            from prefect.artifacts import create_table_artifact
            from prefect.context import FlowRunContext

            if FlowRunContext.get() is None:
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

        if FlowRunContext.get() is None:
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


def batch_size_for(n_units: int, settings: Settings) -> int:
    """Units per Prefect task: at most ``batch_size``, yet two batches per worker.

    A phase of 20 images must not run as one task on one worker; two batches per worker let a
    worker that finishes early take the next, while each Prefect task (~0.1-0.2 s to submit)
    still carries as many light units as it can (bench/bench_flow_overhead.py).
    """
    per_worker = -(-n_units // (settings.n_workers * 2))
    return max(1, min(settings.batch_size, per_worker))


def memory_capacity_mb() -> int | None:
    """The smallest ``MEMORY_MB`` resource of the flow's Dask workers, if they all have one.

    None outside a Dask task runner or when a worker lacks the resource: then units are not
    annotated, since a task asking for a resource no worker has would wait forever.
    """
    try:
        from prefect.context import FlowRunContext

        context = FlowRunContext.get()
        client = getattr(context.task_runner, "client", None) if context else None
        if client is None:
            return None
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
    except Exception as err:
        log.warning("could not read the workers' memory resources (%s)", err)
        return None
    caps = [w.get("resources", {}).get(MEMORY_RESOURCE) for w in workers]
    if not caps or any(not c for c in caps):
        return None
    return int(min(caps))


def memory_request(batch: Sequence[Unit], capacity: int | None) -> dict[str, int] | None:
    """The Dask resources a batch asks for: its units' memory estimates, at most a worker's.

    A worker runs as many bricks at once as its threads allow while their estimates fit in its
    memory ("two bricks per node"); an estimate above a whole worker still runs, alone.
    """
    need = sum(u.memory_mb for u in batch)
    if capacity is None or need <= 0:
        return None
    return {MEMORY_RESOURCE: min(need, capacity)}


TimeoutPolicy = Callable[[Unit], Unit | None]
"""What to do with a unit that ran out of time: the unit to resubmit, or None to give up."""


def run_units(
    phase: str,
    fn: Callable[[ReleaseLayout, Unit], UnitOutput],
    units: Sequence[Unit],
    settings: Settings,
    *,
    on_timeout: TimeoutPolicy | None = None,
    batch_size: int | None = None,
) -> PhaseReport:
    """Run a phase's units through the current flow's task runner; return every result.

    Must be called inside a flow (it submits :func:`lsdr.tasks.batch.run_batch`).
    ``on_timeout`` is the phase's timeout policy (bricks: rerun from the checkpoint with
    ``--bail-out``); without one a timeout is a recorded failure.  ``batch_size`` fixes the
    units per Prefect task (bricks: 1, each brick its own task) instead of
    :func:`batch_size_for`.  Units with a memory estimate ask their worker for that much of
    its ``MEMORY_MB`` resource.
    """
    from dask.base import annotate
    from prefect.futures import as_completed

    from lsdr.tasks.batch import run_batch, run_batch_now

    layout = ReleaseLayout(settings.release_dir)
    ledger = ledger_for(settings)
    version = engine_version(settings.engine)
    units = on_engine(units, settings.engine)
    ledger.plan(phase, [u.key for u in units])

    results: dict[str, UnitResult] = {}
    todo: list[Unit] = []
    for unit in units:
        settled = settle(layout, unit, version)
        if settled.result is None:
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

    artifacts = _Artifacts(phase, len(units))
    _report_progress(_progress(phase, results.values(), len(units)))
    artifacts.update(len(results))

    number = 0
    lost: dict[str, int] = {}
    capacity = memory_capacity_mb() if any(u.memory_mb for u in todo) else None
    while todo:
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
                )
            futures[future] = batch
        todo = []
        for future in as_completed(list(futures)):
            batch = futures[future]
            try:
                batch_results: list[UnitResult] = future.result()
            except Exception as err:
                for unit in batch:
                    lost[unit.key] = lost.get(unit.key, 0) + 1
                todo.extend(_after_lost_batch(phase, batch, err, ledger, settings, results, lost))
            else:
                for r in batch_results:
                    retry = None
                    if r.state == "failed" and r.failure_class == "timeout" and on_timeout:
                        retry = on_timeout(next(u for u in batch if u.key == r.key))
                    if retry is not None:
                        log.warning(
                            "%s %s: %s; resubmitting (%s)",
                            phase,
                            r.key,
                            r.message,
                            ", ".join(f"{k}={v}" for k, v in retry.flags),
                        )
                        todo.append(retry)
                    elif r.state == "failed" and r.failure_class == "oom" and r.threads > 1:
                        unit = next(u for u in batch if u.key == r.key)
                        log.warning(
                            "%s %s: out of memory with %d threads; retrying with %d",
                            phase,
                            r.key,
                            r.threads,
                            r.threads // 2,
                        )
                        todo.append(unit.with_threads(r.threads // 2))
                    else:
                        results[r.key] = r
            _report_progress(_progress(phase, results.values(), len(units)))
            artifacts.update(len(results))

    report = PhaseReport(phase, [results[u.key] for u in units])
    _report_progress(_progress(phase, report.results, len(units), finished=True))
    for r in report.failed:
        log.error("%s %s failed (%s): %s", phase, r.key, r.failure_class, r.message)
    log.info(report.summary_line())
    artifacts.table(report)
    return report


def _after_lost_batch(
    phase: str,
    batch: list[Unit],
    err: BaseException,
    ledger: Ledger,
    settings: Settings,
    results: dict[str, UnitResult],
    lost: dict[str, int],
) -> list[Unit]:
    """A batch whose worker died (or that failed outside its units): resubmit or give up."""
    reason = " ".join(str(err).split())[:300] or type(err).__name__
    again: list[Unit] = []
    final: list[UnitResult] = []
    for unit in batch:
        row = ledger.get(phase, unit.key)
        # The ledger counts starts (Dask re-runs a lost task itself); ``lost`` counts batches
        # that failed here, so an error before any start cannot loop forever.
        attempts = max(row.attempts if row is not None else 0, lost.get(unit.key, 0))
        if attempts < settings.max_attempts:
            log.warning(
                "%s %s: worker lost (%s); attempt %d of %d, resubmitting",
                phase,
                unit.key,
                type(err).__name__,
                attempts,
                settings.max_attempts,
            )
            again.append(unit)
        else:
            final.append(
                UnitResult(
                    phase=phase,
                    key=unit.key,
                    state="failed",
                    failure_class="infra",
                    message=f"worker lost after {attempts} starts: {type(err).__name__}: {reason}",
                    threads=unit.threads,
                )
            )
    if final:
        ledger.finish(
            phase,
            [
                UnitFinish(key=r.key, state="failed", failure_class="infra", message=r.message)
                for r in final
            ],
        )
        results.update({r.key: r for r in final})
    return again


def phase_summary(
    report: PhaseReport,
    *,
    left_out: Sequence[Sequence[str]] = (),
    left_out_what: str = "unit",
    **extra: Any,
) -> dict[str, Any]:
    """A flow's JSON-able return value: counts, failed units, units left out, phase numbers.

    ``left_out``: (key, reason) of what the phase did not plan because an upstream unit
    failed; ``left_out_what`` names such a key ("image", "brick") in the summary lines.
    """
    return {
        "phase": report.phase,
        "counts": report.counts(),
        "failed": [[r.key, r.failure_class, r.message] for r in report.failed],
        **_left_out_fields(left_out, left_out_what),
        **extra,
    }


def _left_out_fields(left_out: Sequence[Sequence[str]], what: str) -> dict[str, Any]:
    """The summary's ``left_out`` (key, reason) pairs and what a key names."""
    return {"left_out": [list(item) for item in left_out], "left_out_what": what}


def settings_for(release_dir: str, overrides: dict[str, Any] | None) -> Settings:
    """A flow's settings: the release's file and environment, then the run's overrides."""
    from pathlib import Path

    from lsdr.infra.settings import load_settings

    return load_settings(Path(release_dir), **(overrides or {}))


def combined_summary(
    phase: str,
    reports: Sequence[PhaseReport],
    *,
    left_out: Sequence[Sequence[str]] = (),
    left_out_what: str = "unit",
    **extra: Any,
) -> dict[str, Any]:
    """One summary for a phase run as several steps (per-brick units, then their merge)."""
    counts: dict[str, int] = {"done": 0, "cached": 0, "failed": 0}
    failed: list[list[Any]] = []
    for report in reports:
        for state, n in report.counts().items():
            counts[state] = counts.get(state, 0) + n
        failed += [[f"{r.phase}:{r.key}", r.failure_class, r.message] for r in report.failed]
    return {
        "phase": phase,
        "counts": counts,
        "failed": failed,
        **_left_out_fields(left_out, left_out_what),
        **extra,
    }


# -- what a phase leaves out because an upstream unit failed ------------------------------------
def upstream_failures(settings: Settings, phase: str, keys: Iterable[str]) -> dict[str, str]:
    """The keys whose unit of ``phase`` last failed, each with ``"<phase> failed: <reason>"``.

    From the units' sidecars, and from the ledger for a unit given up after its worker was lost
    (it has a failed ledger row but no failed sidecar).  A downstream planner leaves these keys
    out instead of reading their (missing, stale or bad) products.
    """
    layout = ReleaseLayout(settings.release_dir)
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return {}
    in_ledger = {f.key: f.message for f in ledger_for(settings).failed(phase)}
    out: dict[str, str] = {}
    for key in wanted:
        message = last_failure(layout, phase, key) or in_ledger.get(key)
        if message is not None:
            out[key] = f"{phase} failed: {message}"
    return out


LEFT_OUT_LOGGED = 20
"""Most left-out units a warning line lists (the phase summary lists them all)."""


def left_out_line(
    phase: str, what: str, left_out: Sequence[Sequence[str]], limit: int | None = None
) -> str:
    """``merge: 1 image left out: <key> (zeropoints failed: <reason>)``; at most ``limit`` named."""
    n = len(left_out)
    shown = list(left_out) if limit is None else list(left_out)[:limit]
    text = "; ".join(f"{key} ({reason})" for key, reason in shown)
    more = f"; and {n - len(shown)} more" if len(shown) < n else ""
    return f"{phase}: {n} {what}{'' if n == 1 else 's'} left out: {text}{more}"


def leave_out(phase: str, what: str, reasons: Mapping[str, str]) -> list[list[str]]:
    """Log the units a phase leaves out (one WARNING line) and return them for its summary."""
    items = [[key, reason] for key, reason in reasons.items()]
    if items:
        log.warning(left_out_line(phase, what, items, limit=LEFT_OUT_LOGGED))
    return items


def read_planned_list(
    phase: str, path: Path, read: Callable[[], list[str]], settings: Settings | None = None
) -> tuple[list[str], list[Unit]]:
    """Names from an upstream list file (image list, brick list), never raising on a bad one.

    An unreadable or malformed list becomes one failed unit of ``phase``, keyed by the file's
    name, with the reader's message (which names the file): (names, []) or ([], [that unit]).
    Once the list reads again, that failed unit is forgotten (its sidecar and ledger row go:
    it stood for the file, not for work to redo), given the run's ``settings``.
    """
    from lsdr.survey.core.errors import InputFileError
    from lsdr.tasks.units import sidecar_path

    try:
        names = read()
    except InputFileError as err:
        return [], [Unit(phase, path.name, (str(path),)).unplannable(err)]
    layout = ReleaseLayout(settings.release_dir) if settings is not None else None
    if settings is not None and layout is not None and last_failure(layout, phase, path.name):
        sidecar_path(layout, phase, path.name).unlink(missing_ok=True)
        ledger_for(settings).forget(phase, [path.name])
        log.info("%s: %s reads again; its failed unit is cleared", phase, path)
    return names, []


def run_then_merge(
    parts: tuple[str, Callable[[ReleaseLayout, Unit], UnitOutput], Sequence[Unit]],
    merge: tuple[
        str,
        Callable[[ReleaseLayout, Unit], UnitOutput],
        Callable[[list[UnitResult]], list[Unit]],
    ],
    settings: Settings,
) -> list[PhaseReport]:
    """Run a phase's partial units, then its merge unit over the partials that finished.

    ``parts`` is (phase, unit function, units); ``merge`` is (phase, unit function, planner
    taking the finished partial units).  No merge when no partial finished.
    """
    phase, fn, units = parts
    first = run_units(phase, fn, units, settings)
    partials = [r for r in first.results if r.state != "failed"]
    if not partials:
        return [first]
    merge_phase, merge_fn, plan_merge = merge
    return [first, run_units(merge_phase, merge_fn, plan_merge(partials), settings)]


def release_bricks(
    settings: Settings, bricks: Sequence[str] | None, phase: str
) -> tuple[list[str], list[list[str]]]:
    """The bricks a post-tractor phase works on (given, or the brick list's), and those left out.

    Only bricks with a tractor catalogue: a brick with no CCDs has none, nothing to summarise.
    A brick whose tractor unit last failed is left out even when an older catalogue is there,
    and so is everything when the brick list cannot be read; the phase logs what it left out.
    """
    from lsdr.survey.core.errors import InputFileError
    from lsdr.survey.core.layout import checked_brick
    from lsdr.survey.pretractor.bricklist import read_brick_list

    layout = ReleaseLayout(settings.release_dir)
    if bricks:
        names = [checked_brick(b) for b in bricks]
    else:
        try:
            names = read_brick_list(layout)
        except InputFileError as err:
            return [], leave_out(phase, "brick list", {layout.brick_list.name: str(err)})
    failed = upstream_failures(settings, "tractor", names)
    left = leave_out(phase, "brick", failed)
    return [b for b in names if b not in failed and layout.tractor(b).exists()], left
