"""``lsdr status``, ``retry``, ``recover`` and ``ledger rebuild``: the release's state.

Read-only commands (``status``) create nothing; on a release where nothing has run they say so.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from lsdr.cli_options import ReleaseDir, Wait
from lsdr.survey.core.layout import check_release_dir

if TYPE_CHECKING:
    from lsdr.infra.ledger import Ledger

ledger_app = typer.Typer(help="The unit ledger (an index of the release's state).")
console = Console(stderr=True)


def release_ledger(release_dir: Path) -> Ledger:
    """The release's ledger (its settings' ``ledger_url``), created if it does not exist."""
    from lsdr.flows.settings import ledger_for
    from lsdr.infra.settings import load_settings

    check_release_dir(release_dir)
    return ledger_for(load_settings(release_dir))


def existing_ledger(release_dir: Path, *, read_only: bool) -> Ledger | None:
    """The release's ledger if anything has run there, else None; creates nothing.

    A damaged ledger is one line naming its file and the fix (``lsdr ledger rebuild``).
    """
    from lsdr.infra.ledger import Ledger, UnreadableLedgerError

    try:
        return Ledger.existing(release_ledger(release_dir).url, read_only=read_only)
    except UnreadableLedgerError as err:
        raise err.with_fix(release_dir) from None


@contextmanager
def holding_release(release_dir: Path, wait: bool) -> Iterator[None]:
    """The release's lock, exclusive, for a command that writes its ledger (``retry`` …)."""
    from lsdr.infra.release_lock import LockMode, release_lock
    from lsdr.survey.core.layout import ReleaseLayout

    check_release_dir(release_dir)
    lock = ReleaseLayout(release_dir).release_lock
    with release_lock(lock, str(release_dir), LockMode.EXCLUSIVE, wait=wait):
        yield


NOTHING_RUN = "nothing has run yet in {}: it has no ledger"
"""What ``status``, ``retry`` and ``recover`` say on a release without a ledger."""


BRICK_TABLE_MAX = 30
"""``lsdr status`` lists the bricks one by one up to this many (more with ``--bricks``)."""


def status(
    release_dir: ReleaseDir,
    phase: Annotated[str | None, typer.Option(help="Only this phase.")] = None,
    bricks: Annotated[
        bool, typer.Option("--bricks", help="List every brick of the tractor phase.")
    ] = False,
) -> None:
    """Units by phase and state (what qdo list showed), the bricks, failed units and why.

    Reads the release's ledger only (state/ledger.sqlite), read-only; it starts and writes
    nothing. Failed units are listed with their failure class (science, infra, oom, timeout,
    usage, environment) and a one-line reason naming the file or the missing tool.
    """
    ledger = existing_ledger(release_dir, read_only=True)
    if ledger is None:
        print(NOTHING_RUN.format(release_dir))
        return
    from lsdr.infra.ledger import STATES

    table = Table(title=f"units of {release_dir}")
    for column in ("phase", *STATES, "total"):
        table.add_column(column, justify="right" if column != "phase" else "left")
    rows = ledger.counts(phase)
    for pc in rows:
        c = pc.counts
        table.add_row(pc.phase, *(str(c.get(s, 0)) for s in STATES), str(pc.total))
    Console().print(table)
    stopped = {pc.phase: pc.counts.get("interrupted", 0) for pc in rows}
    if any(stopped.values()):
        print(interrupted_line(release_dir, stopped))
    if phase in (None, "tractor"):
        rows_t = ledger.rows("tractor")
        if rows_t and (bricks or len(rows_t) <= BRICK_TABLE_MAX):
            Console().print(brick_table(rows_t))
        elif rows_t:
            print(f"{len(rows_t)} bricks in the tractor phase: `lsdr status --bricks` lists them")
    retries = ledger.infra_retries(phase)
    for r in retries[-RETRIES_SHOWN:]:
        print(f"INFRA RETRY {r.phase} {r.key} start {r.attempt} at {r.at}: {r.reason}")
    if len(retries) > RETRIES_SHOWN:
        print(f"({len(retries)} infrastructure retries in all; the last {RETRIES_SHOWN} shown)")
    show_slurm_jobs(release_dir)
    failed = ledger.failed(phase)
    for f in failed:
        print(f"FAILED {f.phase} {f.key} [{f.failure_class}, {f.attempts} start(s)]: {f.message}")
    if failed:
        print(f"failed units by class: {classes_line([f.failure_class for f in failed])}")


def interrupted_line(release_dir: Path, per_phase: dict[str, int]) -> str:
    """``INTERRUPTED zeropoints 1: …``: the units an interrupt stopped; a rerun resumes them."""
    counts = ", ".join(f"{phase} {n}" for phase, n in per_phase.items() if n)
    return (
        f"INTERRUPTED {counts}: stopped by Ctrl-C or SIGTERM before they finished; "
        f"'lsdr run <phase> --release-dir {release_dir}' runs them again"
    )


RETRIES_SHOWN = 10
"""Infrastructure retries ``lsdr status`` lists (the most recent)."""


def show_slurm_jobs(release_dir: Path) -> None:
    """The SLURM worker jobs serving the release (job id, state, elapsed), as ``sqs`` shows."""
    from lsdr.infra.slurm.local import release_jobs
    from lsdr.survey.core.layout import ReleaseLayout

    found = release_jobs(ReleaseLayout(release_dir).state_dir)
    if not found:
        return
    table = Table(title="SLURM worker jobs")
    for column in ("job", "state", "elapsed", "node"):
        table.add_column(column)
    for job in found:
        table.add_row(job.job_id, job.state, job.elapsed, job.node)
    Console().print(table)


def classes_line(failure_classes: list[str]) -> str:
    """``environment 1, science 2``: failed units per class, in the classes' canonical order."""
    from collections import Counter

    from lsdr.tasks.failures import FAILURE_CLASSES

    counts = Counter(failure_classes)
    order = [c for c in FAILURE_CLASSES if c in counts] + sorted(set(counts) - {*FAILURE_CLASSES})
    return ", ".join(f"{c} {counts[c]}" for c in order)


def brick_table(rows: list[Any]) -> Table:
    """One line per brick: state, threads and starts, wall time, peak memory, where it ran."""
    table = Table(title="bricks (tractor phase)")
    for column in ("brick", "state", "threads", "starts", "wall s", "peak MB", "worker", "note"):
        left = column in ("brick", "state", "note")
        table.add_column(column, justify="left" if left else "right")
    for r in sorted(rows, key=lambda row: row.key):
        note = (f"[{r.failure_class}] " if r.failure_class else "") + (r.message or "")
        table.add_row(
            r.key,
            r.state,
            "" if r.threads is None else str(r.threads),
            str(r.attempts),
            "" if r.wall_s is None else f"{r.wall_s:.0f}",
            "" if r.peak_mem_mb is None else f"{r.peak_mem_mb:.0f}",
            "" if r.host is None else f"{r.host}:{r.pid}",
            note[:60],
        )
    return table


def retry(
    release_dir: ReleaseDir,
    phase: Annotated[str, typer.Option(help="The phase whose failed units to re-queue.")],
    failure_class: Annotated[
        str | None, typer.Option("--class", help="Only failures of this class.")
    ] = None,
    wait: Wait = False,
) -> None:
    """Re-queue a phase's failed units (after a fix); the next run reprocesses them."""
    from lsdr.survey.core.layout import ReleaseLayout
    from lsdr.tasks.sidecars import sidecar_path

    ledger = existing_ledger(release_dir, read_only=False)
    if ledger is None:
        print(f"{NOTHING_RUN.format(release_dir)}; no failed unit to re-queue")
        return
    with holding_release(release_dir, wait):
        layout = ReleaseLayout(release_dir)
        keys = [f.key for f in ledger.failed(phase) if failure_class in (None, f.failure_class)]
        for key in keys:
            # A failed unit's sidecar records the failure; removing it makes the run redo it.
            sidecar_path(layout, phase, key).unlink(missing_ok=True)
        n = ledger.retry(phase, failure_class=failure_class)
    print(f"{n} failed unit(s) of {phase} re-queued; run `lsdr run {phase}` again")


def recover(
    release_dir: ReleaseDir,
    all_hosts: Annotated[
        bool,
        typer.Option(
            help="Also recover units running on other hosts (no flow may be running: it "
            "takes the release's lock, as a run does)."
        ),
    ] = False,
    wait: Wait = False,
) -> None:
    """Mark units whose worker died as pending (safe at any time)."""
    from contextlib import nullcontext

    ledger = existing_ledger(release_dir, read_only=False)
    if ledger is None:
        print(f"{NOTHING_RUN.format(release_dir)}; no unit to recover")
        return
    # Units on other hosts are only known dead when no writer runs: held, as a run holds it.
    with holding_release(release_dir, wait) if all_hosts else nullcontext():
        keys = ledger.recover(all_hosts=all_hosts)
    for key in keys:
        print(f"recovered {key}")
    print(f"{len(keys)} unit(s) recovered")


@ledger_app.command("rebuild")
def ledger_rebuild(release_dir: ReleaseDir, wait: Wait = False) -> None:
    """Rebuild the ledger from the release's provenance sidecars (a damaged one moved aside).

    A ledger that is not a readable database (garbage, truncated, failing SQLite's check) is
    renamed ledger.sqlite.corrupt-<UTC time> first; a readable one keeps what the sidecars do
    not record (the nightly increments, the options a release ran with).
    """
    from lsdr.infra.ledger import Ledger, UnreadableLedgerError, move_aside
    from lsdr.tasks.sidecars import rebuild_ledger

    layout = check_release_dir(release_dir)
    with holding_release(release_dir, wait):
        url = release_ledger(release_dir).url
        try:
            Ledger.existing(url, read_only=True)
        except UnreadableLedgerError as err:
            Ledger(url).close()
            aside = move_aside(err.path)
            print(f"moved the damaged ledger aside: {aside} ({err.reason})")
        counts = rebuild_ledger(layout, release_ledger(release_dir))
    for phase, n in sorted(counts.items()):
        print(f"{phase}: {n} units")
    total = sum(counts.values())
    print(f"rebuilt {total} units of {len(counts)} phases from {layout.provenance_dir}")
