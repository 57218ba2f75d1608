"""``lsdr run <phase>``: each phase (and the chains) as a command, run on the release's server.

``run`` checks the options (the phase's model, :mod:`lsdr.phase_flags`) and the release
directory before anything starts, connects to the release's Prefect server (starting it if
needed), runs the phase's flow on a Dask cluster sized from the settings, shows progress, and
reports the phases' results with the exit status (:mod:`lsdr.run_report`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from lsdr import options_check as check
from lsdr.cli_options import (
    BatchSize,
    Bricks,
    Camera,
    Cut,
    CutExpnum,
    DateMax,
    DateMin,
    Engine,
    Height,
    Launcher,
    Pixscale,
    Region,
    ReleaseDir,
    RunCalibs,
    Threads,
    Timeout,
    Verbose,
    Wait,
    Width,
    Workers,
    Zoom,
)
from lsdr.phase_flags import flag_help, phase_options
from lsdr.run_report import EXIT_UNIT_FAILURES, report_results
from lsdr.survey.core.layout import ReleaseLayout, check_release_dir
from lsdr.survey.core.phase_options import (
    ExternalOptions,
    NightlyOptions,
    PhaseOptions,
    PretractorOptions,
    PublishOptions,
    ReleaseOptions,
    SweepsOptions,
    TractorOptions,
)
from lsdr.survey.core.reprocess_request import ReprocessRequest

if TYPE_CHECKING:
    from lsdr.flows.report import PhaseResult
    from lsdr.infra.settings import Settings

run_app = typer.Typer(
    help="Run a phase of the release (each a Prefect flow) or a chain of phases.",
    epilog="Example: lsdr run release --release-dir demo-release (every phase, in order; a "
    "rerun does only what changed). One phase: lsdr run tractor --release-dir demo-release "
    "--brick 1804p325.",
    no_args_is_help=True,
)
console = Console(stderr=True)


def _overrides(**given: Any) -> dict[str, Any]:
    return {k: v for k, v in given.items() if v is not None}


def _timeouts(phase: str, seconds: float | None) -> dict[str, float] | None:
    """``--timeout``: the ``timeouts`` of the units the command runs (None: not given)."""
    from lsdr.infra.settings import unit_phases

    checked = check.timeout(seconds)
    if checked is None:
        return None
    return dict.fromkeys(unit_phases(phase), float(checked))


def _run(phase: str, flags: dict[str, Any]) -> None:
    """Run ``phase`` with the options its command's ``flags`` give (each checked first).

    ``flags`` are the command's parameters by name (``locals()`` at its start): the phase's
    options (:func:`lsdr.phase_flags.phase_options`), the settings flags, ``--verbose``.  A
    publish destination (``publish``, ``release``) is checked too, and ``publish`` refuses a
    release with failed units, before anything starts.
    """
    options = phase_options(phase, flags)
    release_dir: Path = flags["release_dir"]
    check.destination(release_dir, getattr(options, "destination", None))
    if isinstance(options, PublishOptions):
        _publish_gate(release_dir, options.dry_run)
    if isinstance(options, NightlyOptions):
        _release_has_run(release_dir)
    overrides = _overrides(
        n_workers=flags.get("workers"),
        batch_size=flags.get("batch_size"),
        unit_threads=flags.get("threads"),
        engine=flags.get("engine"),
        launcher=flags.get("launcher"),
        lock_wait=flags.get("wait") or None,
        timeouts=_timeouts(phase, flags.get("timeout")),
    )
    execute(release_dir, overrides, [(phase, options)], verbose=bool(flags.get("verbose")))


def execute(
    release_dir: Path,
    overrides: dict[str, Any],
    chain: Sequence[tuple[str, PhaseOptions | ReprocessRequest]],
    verbose: bool = False,
) -> None:
    """Connect, open one cluster, run the phases, print the outcome, exit with its code.

    First, with nothing started or written: the settings given as options, the release
    directory (:func:`check_release_dir`) and its ``state/`` writable
    (:func:`~lsdr.options_check.writable_state`), then the settings as a whole; the commands have
    checked their other options already.  Log records go to the run's log file
    (:mod:`lsdr.runlog`); the console shows the progress (:mod:`lsdr.console`), warnings, and
    INFO records too when ``verbose``.

    Then the ledger is checked readable (a damaged one is one line naming the fix) and the
    release's lock taken (``infra/release_lock.py``): shared for reprocess requests, which run
    side by side, exclusive otherwise; another writer holding it is a refusal naming it, or,
    with ``--wait``, waited for.
    """
    from lsdr.infra.release_lock import LockMode, release_lock
    from lsdr.infra.settings import load_settings
    from lsdr.state_cli import existing_ledger

    check.setting_overrides(overrides)
    check_release_dir(release_dir)
    check.writable_state(release_dir)
    settings = load_settings(release_dir, **overrides)
    existing_ledger(release_dir, read_only=True)  # readable, or one line naming the fix
    requests = all(isinstance(o, ReprocessRequest) for _, o in chain)
    mode = LockMode.SHARED if requests else LockMode.EXCLUSIVE
    lock = ReleaseLayout(settings.release_dir).release_lock
    with release_lock(lock, str(release_dir), mode, wait=settings.lock_wait):
        _interruptible(settings, chain, verbose)


def _interruptible(
    settings: Settings,
    chain: Sequence[tuple[str, PhaseOptions | ReprocessRequest]],
    verbose: bool,
) -> None:
    """:func:`_execute`, Ctrl-C and SIGTERM caught: the run stops cleanly (flows/interrupt.py).

    The flows raise :class:`RunInterrupted` once the running units have had their grace
    period; :func:`_execute` has closed the cluster by then, so the units it names are recorded
    and their temporary files removed with nothing writing (:mod:`lsdr.interrupted`).
    """
    from lsdr.flows.interrupt import RunInterrupted, handling_signals
    from lsdr.interrupted import finish_interrupted

    with handling_signals(settings.interrupt_grace_s):
        try:
            _execute(settings, chain, verbose)
        except RunInterrupted as stop:
            finish_interrupted(settings, stop)


def _execute(
    settings: Settings,
    chain: Sequence[tuple[str, PhaseOptions | ReprocessRequest]],
    verbose: bool,
) -> None:
    """:func:`execute` once the release is held: logs, server, cluster, the phases, the report."""
    from lsdr.flows.interrupt import bridge_prefect
    from lsdr.infra.connect import connect_prefect
    from lsdr.runlog import route_logs

    # Before Prefect is imported and the cluster starts: both read the environment it sets.
    log_path = route_logs(ReleaseLayout(settings.release_dir).state_dir, verbose=verbose)
    console.print(f"log: {log_path}", soft_wrap=True, highlight=False)
    url = connect_prefect(settings)
    bridge_prefect()  # SIGTERM stays this command's to handle inside its flows
    console.print(f"Prefect server: {url.removesuffix('/api')}", soft_wrap=True, highlight=False)
    from lsdr.infra.server_watch import lost_line, watch

    # The units do not need the server: should it go away, the run goes on without it.
    server_watch = watch(url)

    from lsdr.console import RunProgress
    from lsdr.flows.phases import run_phase
    from lsdr.flows.progress import add_progress_hook, remove_progress_hook
    from lsdr.infra.cluster import dask_cluster
    from lsdr.interrupted import stop_running_units

    # With --verbose the INFO records scroll past: a live table would only be torn by them.
    live = settings.progress and console.is_terminal and not console.is_dumb_terminal
    display = RunProgress(console, live=live and not verbose)
    results: list[PhaseResult] = []
    add_progress_hook(display)
    try:
        with ExitStack() as stack:
            # An increment opens its own cluster, only when images arrived (a no-op in seconds).
            nightly_only = all(isinstance(o, NightlyOptions) for _, o in chain)
            address = None if nightly_only else stack.enter_context(dask_cluster(settings))
            stack.push(stop_running_units(settings))  # before it closes: no unit writes on
            server_watch.dask_address = address
            stack.enter_context(display)
            for name, options in chain:
                if isinstance(options, NightlyOptions):
                    results.extend(_nightly(settings, options))
                elif isinstance(options, PretractorOptions):
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
                elif isinstance(options, ReprocessRequest):
                    from lsdr.flows.reprocess import reprocess_region

                    done = reprocess_region(
                        release_dir=str(settings.release_dir),
                        request=options,
                        settings=settings.model_dump(mode="json", exclude={"release_dir"}),
                        dask_address=address,
                    )
                    results.extend(done.phases)
                    console.print(
                        f"reprocessed {done.region}: {len(done.bricks)} bricks "
                        f"({', '.join(done.bricks[:8])}{' …' if len(done.bricks) > 8 else ''})",
                        soft_wrap=True,
                        highlight=False,
                    )
                else:
                    results.append(run_phase(name, settings, address, options))
    finally:
        remove_progress_hook(display)
    try:
        report_results(results)
    finally:
        if (line := lost_line(settings.release_dir)) is not None:
            console.print(line, soft_wrap=True, highlight=False, markup=False)


@run_app.command("discover")
def run_discover(
    release_dir: ReleaseDir,
    cameras: Camera = None,
    date_min: DateMin = None,
    date_max: DateMax = None,
    workers: Workers = None,
    timeout: Timeout = None,
    wait: Wait = False,
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
    timeout: Timeout = None,
    wait: Wait = False,
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
    timeout: Timeout = None,
    wait: Wait = False,
    verbose: Verbose = False,
) -> None:
    """Merge calibs per exposure and zeropoint tables into survey-ccds / ccds-annotated."""
    _run("merge", locals())


@run_app.command("kdtree")
def run_kdtree(
    release_dir: ReleaseDir, timeout: Timeout = None, wait: Wait = False, verbose: Verbose = False
) -> None:
    """Write the unified kd-tree CCD file survey-ccds-<dr>.kd.fits."""
    _run("kdtree", locals())


@run_app.command("bricks")
def run_bricks(
    release_dir: ReleaseDir,
    region: Region = None,
    timeout: Timeout = None,
    wait: Wait = False,
    verbose: Verbose = False,
) -> None:
    """Write the brick list: bricks of the region touched by CCDs that pass the cuts."""
    _run("bricks", locals())


@run_app.command("depthcut")
def run_depthcut(
    release_dir: ReleaseDir, timeout: Timeout = None, wait: Wait = False, verbose: Verbose = False
) -> None:
    """Keep, per brick, the CCDs needed to reach the target depth (optional phase)."""
    _run("depthcut", locals())


@run_app.command("tractor")
def run_tractor(
    release_dir: ReleaseDir,
    bricks: Bricks = None,
    width: Width = None,
    height: Height = None,
    pixscale: Pixscale = None,
    zoom: Zoom = None,
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
    bail_out: Annotated[
        bool | None,
        typer.Option("--bail-out/--no-bail-out", help=flag_help(TractorOptions, "bail_out")),
    ] = None,
    engine: Engine = None,
    launcher: Launcher = None,
    workers: Workers = None,
    threads: Threads = None,
    timeout: Timeout = None,
    wait: Wait = False,
    verbose: Verbose = False,
) -> None:
    """runbrick on every brick of the brick list (tractor/, coadd/ products)."""
    _run("tractor", locals())


@run_app.command("brightneighbors")
def run_brightneighbors(
    release_dir: ReleaseDir,
    bricks: Bricks = None,
    timeout: Timeout = None,
    wait: Wait = False,
    verbose: Verbose = False,
) -> None:
    """Mark neighbouring bricks' bright stars and large blobs in each brick's maskbits."""
    _run("brightneighbors", locals())


@run_app.command("depth")
def run_depth(
    release_dir: ReleaseDir,
    bricks: Bricks = None,
    timeout: Timeout = None,
    wait: Wait = False,
    verbose: Verbose = False,
) -> None:
    """The release's depth histogram (<dr>-depth.fits) and its plot, from the depth maps."""
    _run("depth", locals())


@run_app.command("summary")
def run_summary(
    release_dir: ReleaseDir,
    bricks: Bricks = None,
    timeout: Timeout = None,
    wait: Wait = False,
    verbose: Verbose = False,
) -> None:
    """survey-bricks-<dr>.fits.gz per RA-degree chunk, merged, with sky-map plots."""
    _run("summary", locals())


@run_app.command("sweeps")
def run_sweeps(
    release_dir: ReleaseDir,
    bricks: Bricks = None,
    version: Annotated[
        str | None, typer.Option("--version", help=flag_help(SweepsOptions, "version"))
    ] = None,
    timeout: Timeout = None,
    wait: Wait = False,
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
    timeout: Timeout = None,
    wait: Wait = False,
    verbose: Verbose = False,
) -> None:
    """Match the release to the external catalogues (external/survey-<dr>-<name>.fits)."""
    _run("external", locals())


@run_app.command("package")
def run_package(
    release_dir: ReleaseDir,
    bricks: Bricks = None,
    timeout: Timeout = None,
    wait: Wait = False,
    verbose: Verbose = False,
) -> None:
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
    timeout: Timeout = None,
    wait: Wait = False,
    verbose: Verbose = False,
) -> None:
    """Copy the release to its destination with rsync (no images/ links, no state/).

    A release with failed units (lsdr status lists them) is not published: fix them, lsdr
    retry, rerun. A dry run still lists what would be copied.
    """
    _run("publish", locals())


def _publish_gate(release_dir: Path, dry_run: bool) -> None:
    """Refuse to publish a release whose ledger has failed units (exit 1), before anything starts.

    As ``lsdr run release`` does not publish a run with failed units; read-only, so nothing is
    written or copied.  A dry run is not refused: it says that a publish would be.
    """
    from lsdr.publish_gate import blocking_failures, refusal
    from lsdr.state_cli import existing_ledger

    reason = refusal(release_dir, blocking_failures(existing_ledger(release_dir, read_only=True)))
    if reason is None:
        return
    if dry_run:
        print(f"lsdr: dry run only: a publish would be refused: {reason}", file=sys.stderr)
        return
    print(f"lsdr: {reason}", file=sys.stderr)
    raise SystemExit(EXIT_UNIT_FAILURES)


def _release_has_run(release_dir: Path) -> None:
    """Refuse an increment on a release that never ran (exit 2), before anything starts."""
    from lsdr.state_cli import existing_ledger
    from lsdr.survey.core.errors import UsageError

    check_release_dir(release_dir)
    ledger = existing_ledger(release_dir, read_only=True)
    if ledger is None or ledger.chain_options("release") is None:
        raise UsageError(
            f"--release-dir {release_dir}: no release has run here: run 'lsdr run release' "
            "first (the increment repeats it on the new images)"
        )


def _nightly(settings: Any, options: NightlyOptions) -> list[PhaseResult]:
    """Run the increment; print its images, bricks and summary; its release phases' results."""
    from lsdr.flows.nightly import nightly

    outcome = nightly(
        release_dir=str(settings.release_dir),
        options=options,
        settings=settings.model_dump(mode="json", exclude={"release_dir"}),
    )
    since = outcome.watermark or "the release"
    console.print(
        f"nightly: {outcome.status}: {len(outcome.images)} images arrived since {since}",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
    for image in outcome.images:
        bricks = ", ".join(image.bricks) or "no brick"
        why = f" ({image.reason})" if image.reason else ""
        console.print(
            f"  {image.state} {image.image} [{image.why}]: {bricks}{why}",
            soft_wrap=True,
            highlight=False,
            markup=False,
        )
    if outcome.status != "dry-run":
        redone = ", ".join(outcome.bricks_redone) or "none"
        console.print(f"bricks redone: {redone}", soft_wrap=True, highlight=False, markup=False)
        console.print(
            f"nightly summary: {outcome.summary}", soft_wrap=True, highlight=False, markup=False
        )
    return outcome.phases


@run_app.command("nightly")
def run_nightly(
    release_dir: ReleaseDir,
    dry_run: Annotated[
        bool | None,
        typer.Option("--dry-run/--no-dry-run", help=flag_help(NightlyOptions, "dry_run")),
    ] = None,
    workers: Workers = None,
    threads: Threads = None,
    wait: Wait = False,
    verbose: Verbose = False,
) -> None:
    """The nightly increment: the CP images that arrived since the last one, and what they touch.

    Repeats the release as it last ran (its region, grid and products) on only what the new
    images change; a night without new images runs nothing (docs/nightly.md).
    """
    _run("nightly", locals())


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
    engine: Engine = None,
    launcher: Launcher = None,
    wait: Wait = False,
    verbose: Verbose = False,
) -> None:
    """Every phase in order: pre-tractor, tractor, post-processing, package (and publish)."""
    _run("release", locals())


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
    wait: Wait = False,
    verbose: Verbose = False,
) -> None:
    """discover → zeropoints → merge → kdtree → bricks (→ depthcut), one command."""
    _run("pretractor", locals())
