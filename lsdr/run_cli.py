"""``lsdr run <phase>``, ``status``, ``retry``, ``recover`` and ``ledger rebuild``.

``run`` connects to the release's Prefect server (starting it if needed), runs the phase's flow
on a Dask cluster sized from the settings, shows progress bars, and lists failed units with
their class and reason.  Exit statuses:

- 0: every unit is done;
- 1: some units failed, at least one of them not because of the environment (bad data, a lost
  worker, out of memory, a timeout; the others completed), or none did but units were left out
  because an upstream unit failed before (a phase run alone), or ``publish`` refused a release
  with failed units;
- 2: bad input or usage (one line, no traceback), checked before anything starts: every
  option (:mod:`lsdr.options_check`) and the release directory, before the Prefect server, the
  Dask cluster or any write;
- 3: the only failures are the environment's (class ``environment``: a program, Python module
  or shared library is missing); install what the message names and rerun, which retries them.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from lsdr import options_check as check
from lsdr.phase_flags import flag_help, phase_options
from lsdr.survey.core.layout import check_release_dir
from lsdr.survey.core.phase_options import (
    BrickSelection,
    BricksOptions,
    DiscoverOptions,
    ExternalOptions,
    MergeOptions,
    PhaseOptions,
    PretractorOptions,
    PublishOptions,
    ReleaseOptions,
    SweepsOptions,
    TractorOptions,
    ZeropointsOptions,
)

if TYPE_CHECKING:
    from lsdr.flows.report import PhaseResult, PublishResult
    from lsdr.infra.ledger import Ledger

run_app = typer.Typer(
    help="Run a phase of the release (each a Prefect flow) or a chain of phases.",
    epilog="Example: lsdr run release --release-dir demo-release (every phase, in order; a "
    "rerun does only what changed). One phase: lsdr run tractor --release-dir demo-release "
    "--brick 1804p325.",
    no_args_is_help=True,
)
ledger_app = typer.Typer(help="The unit ledger (an index of the release's state).")
console = Console(stderr=True)

EXIT_OK, EXIT_UNIT_FAILURES, EXIT_USAGE, EXIT_ENVIRONMENT = 0, 1, 2, 3
"""``lsdr``'s exit statuses: done; units failed; bad input or usage; only the environment."""

ReleaseDir = Annotated[
    Path, typer.Option("--release-dir", "-r", help="The release (and survey) directory.")
]
# The phase options' flags: each default is its model's (None here: "not given"); the help
# comes from the model (lsdr/phase_flags.py; tests/test_phase_options.py checks each flag).
Region = Annotated[
    str | None,
    typer.Option(help=flag_help(BricksOptions, "region") + " ra_min > ra_max crosses RA 0."),
]
Bricks = Annotated[
    list[str] | None,
    typer.Option(
        "--brick", help=flag_help(BrickSelection, "bricks", "Only these bricks (repeatable).")
    ),
]
Width = Annotated[
    int | None, typer.Option("--width", "-W", help=flag_help(TractorOptions, "width"))
]
Height = Annotated[
    int | None, typer.Option("--height", "-H", help=flag_help(TractorOptions, "height"))
]
Pixscale = Annotated[
    float | None, typer.Option("--pixscale", help=flag_help(TractorOptions, "pixscale"))
]
Camera = Annotated[
    list[str] | None,
    typer.Option("--camera", help=flag_help(DiscoverOptions, "cameras") + " Repeatable."),
]
DateMin = Annotated[
    datetime | None,
    typer.Option("--date-min", formats=["%Y-%m-%d"], help=flag_help(DiscoverOptions, "date_min")),
]
DateMax = Annotated[
    datetime | None,
    typer.Option("--date-max", formats=["%Y-%m-%d"], help=flag_help(DiscoverOptions, "date_max")),
]
RunCalibs = Annotated[
    bool | None,
    typer.Option("--run-calibs/--no-run-calibs", help=flag_help(ZeropointsOptions, "run_calibs")),
]
Cut = Annotated[bool | None, typer.Option("--cut/--no-cut", help=flag_help(MergeOptions, "cut"))]
CutExpnum = Annotated[
    bool | None,
    typer.Option("--cut-expnum/--no-cut-expnum", help=flag_help(MergeOptions, "cut_expnum")),
]
# The settings' flags (infra/settings.py's model has their defaults) and the console's.
Workers = Annotated[int | None, typer.Option("--workers", help="Dask worker processes.")]
BatchSize = Annotated[int | None, typer.Option("--batch-size", help="Units per Prefect task.")]
Threads = Annotated[int | None, typer.Option("--threads", help="Threads per unit.")]
Verbose = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="Also show INFO log records on the console (the run's log file always has them).",
    ),
]


def _overrides(**given: Any) -> dict[str, Any]:
    return {k: v for k, v in given.items() if v is not None}


def _run(phase: str, flags: dict[str, Any], *, check_destination: bool = False) -> None:
    """Run ``phase`` with the options its command's ``flags`` give (each checked first).

    ``flags`` are the command's parameters by name (``locals()`` at its start): the phase's
    options (:func:`lsdr.phase_flags.phase_options`), the settings flags, ``--verbose``.
    """
    options = phase_options(phase, flags)
    release_dir: Path = flags["release_dir"]
    if check_destination:
        check.destination(release_dir, getattr(options, "destination", None))
    overrides = _overrides(
        n_workers=flags.get("workers"),
        batch_size=flags.get("batch_size"),
        unit_threads=flags.get("threads"),
    )
    _execute(release_dir, overrides, [(phase, options)], verbose=bool(flags.get("verbose")))


def _execute(
    release_dir: Path,
    overrides: dict[str, Any],
    chain: list[tuple[str, PhaseOptions]],
    verbose: bool = False,
) -> None:
    """Connect, open one cluster, run the phases, print the outcome, exit with its code.

    First, with nothing started or written: the settings given as options, the release
    directory (:func:`check_release_dir`), then the settings as a whole; the commands have
    checked their other options already.  Log records go to the run's log file
    (:mod:`lsdr.runlog`); the console shows the progress (:mod:`lsdr.console`), warnings, and
    INFO records too when ``verbose``.
    """
    from lsdr.infra.settings import load_settings

    check.setting_overrides(overrides)
    check_release_dir(release_dir)
    settings = load_settings(release_dir, **overrides)
    from lsdr.infra.connect import connect_prefect
    from lsdr.runlog import route_logs
    from lsdr.survey.core.layout import ReleaseLayout

    # Before Prefect is imported and the cluster starts: both read the environment it sets.
    log_path = route_logs(ReleaseLayout(settings.release_dir).state_dir, verbose=verbose)
    console.print(f"log: {log_path}", soft_wrap=True, highlight=False)
    url = connect_prefect(settings)
    console.print(f"Prefect server: {url.removesuffix('/api')}", soft_wrap=True, highlight=False)

    from lsdr.console import RunProgress
    from lsdr.flows.phases import run_phase
    from lsdr.flows.progress import add_progress_hook, remove_progress_hook
    from lsdr.infra.cluster import dask_cluster

    # With --verbose the INFO records scroll past: a live table would only be torn by them.
    live = settings.progress and console.is_terminal and not console.is_dumb_terminal
    display = RunProgress(console, live=live and not verbose)
    results: list[PhaseResult] = []
    add_progress_hook(display)
    try:
        with dask_cluster(settings) as address, display:
            for name, options in chain:
                if isinstance(options, PretractorOptions):
                    from lsdr.flows.pretractor import pretractor

                    results.extend(
                        pretractor(
                            release_dir=str(settings.release_dir),
                            options=options,
                            settings=settings.model_dump(mode="json", exclude={"release_dir"}),
                            dask_address=address,
                        )
                    )
                elif isinstance(options, ReleaseOptions):
                    from lsdr.flows.release import release

                    outcome = release(
                        release_dir=str(settings.release_dir),
                        options=options,
                        settings=settings.model_dump(mode="json", exclude={"release_dir"}),
                        dask_address=address,
                    )
                    results.extend(outcome.phases)
                    console.print(
                        f"release summary: {outcome.summary}", soft_wrap=True, highlight=False
                    )
                else:
                    results.append(run_phase(name, settings, address, options))
    finally:
        remove_progress_hook(display)
    _report(results)


def exit_status(failure_classes: list[str], not_done: int = 0) -> int:
    """The run's exit status from its failed units' classes (see the module docstring).

    3 when every failure is the environment's (nothing is wrong with the data), 1 when any
    other unit failed, or when none failed but ``not_done`` units or phases were not run
    because an upstream unit failed (left out by a phase run alone after that failure, or a
    publish refused), 0 when every unit is done.
    """
    from lsdr.tasks.failures import ENVIRONMENT

    if not failure_classes:
        return EXIT_UNIT_FAILURES if not_done else EXIT_OK
    if all(cls == ENVIRONMENT for cls in failure_classes):
        return EXIT_ENVIRONMENT
    return EXIT_UNIT_FAILURES


LEFT_OUT_SHOWN = 20
"""Most left-out units (over all phases) or dry-run files the end-of-run report names."""


def _report(results: list[PhaseResult]) -> None:
    """Print one line per phase, per failed unit and per left-out unit; exit with its status.

    The left-out units (not planned because an upstream unit failed) are named with their
    reason up to :data:`LEFT_OUT_SHOWN`, then counted; they make the run's status 1 when
    nothing failed in it (:func:`exit_status`).
    """
    from lsdr.flows.report import MergeResult, PublishResult
    from lsdr.tasks.failures import ENVIRONMENT

    classes: list[str] = []
    flat: list[PhaseResult] = []
    for result in results:
        if isinstance(result, MergeResult) and result.merge_calibs is not None:
            # Its failures are in merge's own list.
            flat.append(result.merge_calibs.model_copy(update={"failed": []}))
        flat.append(result)
    left_out = 0
    for result in flat:
        c = result.counts
        items = result.left_out
        what = result.left_out_what
        extra = f", {len(items)} {what}{'' if len(items) == 1 else 's'} left out" if items else ""
        print(f"{result.phase}: {c.done} done, {c.cached} already done, {c.failed} failed{extra}")
        for key, cls, message in result.failed:
            classes.append(cls)
            print(f"  FAILED {key} [{cls}]: {message}")
        if result.skipped:
            print(f"  NOT RUN: {result.skipped}")
        if isinstance(result, PublishResult) and result.dry_run:
            _print_would_copy(result)
        shown = items[: max(LEFT_OUT_SHOWN - left_out, 0)]
        for key, reason in shown:
            print(f"  LEFT OUT {key}: {reason}")
        if len(items) > len(shown):
            print(f"  and {len(items) - len(shown)} more {what}(s) left out")
        left_out += len(items)
    environment = classes.count(ENVIRONMENT)
    if environment:
        print(
            f"{environment} unit(s) failed because of the environment: install what is named "
            "above, then rerun."
        )
    if len(classes) > environment:
        print(
            f"{len(classes) - environment} unit(s) failed: fix them, then "
            "`lsdr retry --phase P` and rerun."
        )
    if left_out and not classes:
        print(
            f"{left_out} unit(s) left out because an upstream unit failed: `lsdr status` lists "
            f"the failed units; fix them, then {_retry_hint(flat)}, rerun that phase and this one."
        )
    skipped = sum(1 for result in flat if result.skipped)
    code = exit_status(classes, left_out + skipped)
    if code != EXIT_OK:
        raise SystemExit(code)


def _print_would_copy(result: PublishResult) -> None:
    """A dry-run publish: how many files it would copy, the first ones named."""
    files = list(result.would_copy)
    total = result.would_copy_total
    print(f"  dry run: would copy {total} file(s)")
    for name in files[:LEFT_OUT_SHOWN]:
        print(f"    {name}")
    if total > min(len(files), LEFT_OUT_SHOWN):
        print(f"    and {total - min(len(files), LEFT_OUT_SHOWN)} more")


def _retry_hint(results: list[PhaseResult]) -> str:
    """``lsdr retry --phase zeropoints``: the phases whose failures the left-out units name."""
    phases = sorted(
        {
            reason.partition(" failed: ")[0]
            for result in results
            for _, reason in result.left_out
            if " failed: " in reason
        }
    )
    if len(phases) == 1:
        return f"`lsdr retry --phase {phases[0]}`"
    return f"`lsdr retry --phase P` ({', '.join(phases)})" if phases else "`lsdr retry --phase P`"


@run_app.command("discover")
def run_discover(
    release_dir: ReleaseDir,
    cameras: Camera = None,
    date_min: DateMin = None,
    date_max: DateMax = None,
    workers: Workers = None,
    verbose: Verbose = False,
) -> None:
    """Find CP images, trim dates and duplicates, write image-list.txt."""
    _run("discover", locals())


@run_app.command("zeropoints")
def run_zeropoints(
    release_dir: ReleaseDir,
    run_calibs: RunCalibs = None,
    workers: Workers = None,
    batch_size: BatchSize = None,
    threads: Threads = None,
    verbose: Verbose = False,
) -> None:
    """Zeropoints, PSF and spline sky for every CCD of every listed image."""
    _run("zeropoints", locals())


@run_app.command("merge")
def run_merge(
    release_dir: ReleaseDir,
    cut: Cut = None,
    cut_expnum: CutExpnum = None,
    workers: Workers = None,
    verbose: Verbose = False,
) -> None:
    """Merge calibs per exposure and zeropoint tables into survey-ccds / ccds-annotated."""
    _run("merge", locals())


@run_app.command("kdtree")
def run_kdtree(release_dir: ReleaseDir, verbose: Verbose = False) -> None:
    """Write the unified kd-tree CCD file survey-ccds-<dr>.kd.fits."""
    _run("kdtree", locals())


@run_app.command("bricks")
def run_bricks(release_dir: ReleaseDir, region: Region = None, verbose: Verbose = False) -> None:
    """Write the brick list: bricks of the region touched by CCDs that pass the cuts."""
    _run("bricks", locals())


@run_app.command("depthcut")
def run_depthcut(release_dir: ReleaseDir, verbose: Verbose = False) -> None:
    """Keep, per brick, the CCDs needed to reach the target depth (optional phase)."""
    _run("depthcut", locals())


@run_app.command("tractor")
def run_tractor(
    release_dir: ReleaseDir,
    bricks: Bricks = None,
    width: Width = None,
    height: Height = None,
    pixscale: Pixscale = None,
    keep_checkpoints: Annotated[
        bool | None,
        typer.Option(
            "--keep-checkpoints/--no-keep-checkpoints",
            help=flag_help(TractorOptions, "keep_checkpoints"),
        ),
    ] = None,
    fit_budget_s: Annotated[
        float | None, typer.Option("--fit-budget", help=flag_help(TractorOptions, "fit_budget_s"))
    ] = None,
    checkpoint_period: Annotated[
        float | None,
        typer.Option("--checkpoint-period", help=flag_help(TractorOptions, "checkpoint_period")),
    ] = None,
    outliers: Annotated[
        bool | None,
        typer.Option("--outliers/--no-outliers", help=flag_help(TractorOptions, "outliers")),
    ] = None,
    workers: Workers = None,
    threads: Threads = None,
    verbose: Verbose = False,
) -> None:
    """runbrick on every brick of the brick list (tractor/, coadd/ products)."""
    _run("tractor", locals())


@run_app.command("brightneighbors")
def run_brightneighbors(
    release_dir: ReleaseDir, bricks: Bricks = None, verbose: Verbose = False
) -> None:
    """Mark neighbouring bricks' bright stars and large blobs in each brick's maskbits."""
    _run("brightneighbors", locals())


@run_app.command("depth")
def run_depth(release_dir: ReleaseDir, bricks: Bricks = None, verbose: Verbose = False) -> None:
    """The release's depth histogram (<dr>-depth.fits) and its plot, from the depth maps."""
    _run("depth", locals())


@run_app.command("summary")
def run_summary(release_dir: ReleaseDir, bricks: Bricks = None, verbose: Verbose = False) -> None:
    """survey-bricks-<dr>.fits.gz per RA-degree chunk, merged, with sky-map plots."""
    _run("summary", locals())


@run_app.command("sweeps")
def run_sweeps(
    release_dir: ReleaseDir,
    bricks: Bricks = None,
    version: Annotated[
        str | None, typer.Option("--version", help=flag_help(SweepsOptions, "version"))
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Sweep files: the primary objects' sweep columns per 5°×5° box."""
    _run("sweeps", locals())


@run_app.command("external")
def run_external(
    release_dir: ReleaseDir,
    bricks: Bricks = None,
    radius_arcsec: Annotated[
        float | None, typer.Option("--radius", help=flag_help(ExternalOptions, "radius_arcsec"))
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Match the release to the external catalogues (external/survey-<dr>-<name>.fits)."""
    _run("external", locals())


@run_app.command("package")
def run_package(release_dir: ReleaseDir, bricks: Bricks = None, verbose: Verbose = False) -> None:
    """Verify brick checksums, write the release checksum files, tar the logs."""
    _run("package", locals())


@run_app.command("publish")
def run_publish(
    release_dir: ReleaseDir,
    destination: Annotated[
        str, typer.Option("--destination", help=flag_help(PublishOptions, "destination"))
    ],
    dry_run: Annotated[
        bool | None,
        typer.Option("--dry-run/--no-dry-run", help=flag_help(PublishOptions, "dry_run")),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Copy the release to its destination with rsync (no images/ links, no state/).

    A release with failed units (lsdr status lists them) is not published: fix them, lsdr
    retry, rerun. A dry run still lists what would be copied.
    """
    flags = locals()
    options = phase_options("publish", flags)
    check.destination(release_dir, destination)
    assert isinstance(options, PublishOptions)
    _publish_gate(release_dir, options.dry_run)
    _run("publish", flags)


def _publish_gate(release_dir: Path, dry_run: bool) -> None:
    """Refuse to publish a release whose ledger has failed units (exit 1), before anything starts.

    As ``lsdr run release`` does not publish a run with failed units; read-only, so nothing is
    written or copied.  A dry run is not refused: it says that a publish would be.
    """
    from lsdr.publish_gate import blocking_failures, refusal

    reason = refusal(release_dir, blocking_failures(_existing_ledger(release_dir, read_only=True)))
    if reason is None:
        return
    if dry_run:
        print(f"lsdr: dry run only: a publish would be refused: {reason}", file=sys.stderr)
        return
    print(f"lsdr: {reason}", file=sys.stderr)
    raise SystemExit(EXIT_UNIT_FAILURES)


@run_app.command("release")
def run_release(
    release_dir: ReleaseDir,
    region: Region = None,
    width: Width = None,
    height: Height = None,
    pixscale: Pixscale = None,
    destination: Annotated[
        str | None, typer.Option("--destination", help=flag_help(ReleaseOptions, "destination"))
    ] = None,
    workers: Workers = None,
    threads: Threads = None,
    verbose: Verbose = False,
) -> None:
    """Every phase in order: pre-tractor, tractor, post-processing, package (and publish)."""
    _run("release", locals(), check_destination=True)


@run_app.command("pretractor")
def run_pretractor(
    release_dir: ReleaseDir,
    region: Region = None,
    cameras: Camera = None,
    date_min: DateMin = None,
    date_max: DateMax = None,
    run_calibs: RunCalibs = None,
    cut: Cut = None,
    cut_expnum: CutExpnum = None,
    depth_cut: Annotated[
        bool | None,
        typer.Option("--depth-cut/--no-depth-cut", help=flag_help(PretractorOptions, "depth_cut")),
    ] = None,
    workers: Workers = None,
    batch_size: BatchSize = None,
    threads: Threads = None,
    verbose: Verbose = False,
) -> None:
    """discover → zeropoints → merge → kdtree → bricks (→ depthcut), one command."""
    _run("pretractor", locals())


def _ledger(release_dir: Path) -> Ledger:
    """The release's ledger (its settings' ``ledger_url``), created if it does not exist."""
    from lsdr.flows.settings import ledger_for
    from lsdr.infra.settings import load_settings

    check_release_dir(release_dir)
    return ledger_for(load_settings(release_dir))


def _existing_ledger(release_dir: Path, *, read_only: bool) -> Ledger | None:
    """The release's ledger if anything has run there, else None; creates nothing."""
    from lsdr.infra.ledger import Ledger

    return Ledger.existing(_ledger(release_dir).url, read_only=read_only)


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
    ledger = _existing_ledger(release_dir, read_only=True)
    if ledger is None:
        print(NOTHING_RUN.format(release_dir))
        return
    table = Table(title=f"units of {release_dir}")
    for column in ("phase", "pending", "running", "done", "failed", "total"):
        table.add_column(column, justify="right" if column != "phase" else "left")
    rows = ledger.counts(phase)
    for pc in rows:
        c = pc.counts
        table.add_row(
            pc.phase,
            *(str(c.get(s, 0)) for s in ("pending", "running", "done", "failed")),
            str(pc.total),
        )
    Console().print(table)
    if phase in (None, "tractor"):
        rows_t = ledger.rows("tractor")
        if rows_t and (bricks or len(rows_t) <= BRICK_TABLE_MAX):
            Console().print(brick_table(rows_t))
        elif rows_t:
            print(f"{len(rows_t)} bricks in the tractor phase: `lsdr status --bricks` lists them")
    failed = ledger.failed(phase)
    for f in failed:
        print(f"FAILED {f.phase} {f.key} [{f.failure_class}, {f.attempts} start(s)]: {f.message}")
    if failed:
        print(f"failed units by class: {classes_line([f.failure_class for f in failed])}")


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
) -> None:
    """Re-queue a phase's failed units (after a fix); the next run reprocesses them."""
    from lsdr.survey.core.layout import ReleaseLayout
    from lsdr.tasks.sidecars import sidecar_path

    ledger = _existing_ledger(release_dir, read_only=False)
    if ledger is None:
        print(f"{NOTHING_RUN.format(release_dir)}; no failed unit to re-queue")
        return
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
        typer.Option(help="Also recover units running on other hosts (no flow may be running)."),
    ] = False,
) -> None:
    """Mark units whose worker died as pending (safe at any time)."""
    ledger = _existing_ledger(release_dir, read_only=False)
    if ledger is None:
        print(f"{NOTHING_RUN.format(release_dir)}; no unit to recover")
        return
    keys = ledger.recover(all_hosts=all_hosts)
    for key in keys:
        print(f"recovered {key}")
    print(f"{len(keys)} unit(s) recovered")


@ledger_app.command("rebuild")
def ledger_rebuild(release_dir: ReleaseDir) -> None:
    """Rebuild the ledger from the release's provenance sidecars."""
    from lsdr.tasks.sidecars import rebuild_ledger

    layout = check_release_dir(release_dir)
    counts = rebuild_ledger(layout, _ledger(release_dir))
    for phase, n in sorted(counts.items()):
        print(f"{phase}: {n} units")
