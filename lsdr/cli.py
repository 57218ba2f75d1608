"""The ``lsdr`` command: one entry point for every phase of a release.

Errors in the survey's inputs (a brick name that is not on the grid, a region off the sky, an
unknown camera, a file that cannot be read) print one line naming the problem and exit with
status 2, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from lsdr import __version__
from lsdr.cli_options import Verbose, Wait
from lsdr.compare_cli import compare
from lsdr.helptext import tidy
from lsdr.infra.errors import InfraError
from lsdr.reprocess_cli import reprocess
from lsdr.run_cli import run_app
from lsdr.runbrick_cli import runbrick
from lsdr.server_cli import app as server_app
from lsdr.slurm_cli import slurm_app
from lsdr.state_cli import ledger_app, recover, retry, status
from lsdr.survey.core import bricks as grid
from lsdr.survey.core.errors import SurveyError
from lsdr.survey.core.phase_options import NAMED_REGIONS
from lsdr.survey.simulate.config import DEMO_BINNING

if TYPE_CHECKING:
    from lsdr.survey.simulate.config import SimulationConfig

DEMO_BRICK_PIXSCALE = grid.BRICK_PIXSCALE * DEMO_BINNING
"""The demo's brick grid pixel (″): its finest CCD pixel (Mosaic binned), not finer."""
DEMO_BRICK_WIDTH = grid.BRICK_SIZE_PIX // DEMO_BINNING
"""Brick grid side in the demo: the same 0.262° brick image as 3600² at 0.262″."""

EPILOG = (
    "Start with: lsdr demo (a synthetic survey of 15 bricks and its whole release, about six "
    "minutes on two cores). Exit status: 0 all done, 1 some units failed (listed with their "
    "reasons), 2 bad input or usage, 3 something is missing from the environment (named, with "
    "the command that installs it)."
)

app = typer.Typer(
    name="lsdr",
    help="Run a DESI Legacy Imaging Surveys data release as Prefect dataflows.",
    epilog=EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
bricks_app = typer.Typer(
    help="The brick grid: look up bricks, list a region's bricks, write survey-bricks.",
    epilog="Example: lsdr bricks at 180.5 32.5 (prints 1804p325, the brick holding that point).",
    no_args_is_help=True,
)
app.add_typer(bricks_app, name="bricks")
app.add_typer(run_app, name="run")
app.add_typer(ledger_app, name="ledger")
app.add_typer(slurm_app, name="slurm")
app.add_typer(
    server_app,
    name="server",
    help="The release's own Prefect server.",
    epilog="Example: lsdr server up --release-dir demo-release (prints the server's URL).",
)
app.command(
    epilog="Example: lsdr status --release-dir demo-release --phase tractor",
)(status)
app.command(
    epilog="Example: lsdr reprocess --release-dir demo-release --bricks 1804p325,1807p325 "
    "--force (those bricks redone, and what reads them).",
)(reprocess)
app.command()(retry)
app.command()(recover)
app.command(
    "runbrick",
    epilog="Example: lsdr runbrick --survey-dir testcase --brick 1773p595 --zoom 1300 1500 700 "
    "900 --engine legacypipe (the real runbrick; --engine lite for lsdr's own).",
)(runbrick)
app.command(
    "compare",
    epilog="Example: lsdr compare lite-run lp-run --out compare --report "
    "docs/validation-engines.md (lite-run, lp-run: lsdr runbrick --outdir of the same bricks "
    "with --engine lite and --engine legacypipe).",
)(compare)

out = Console()

RaMin = Annotated[float, typer.Option("--ra-min", help="Region: lowest RA, degrees.")]
RaMax = Annotated[float, typer.Option("--ra-max", help="Region: highest RA, degrees.")]
DecMin = Annotated[float, typer.Option("--dec-min", help="Region: lowest Dec, degrees.")]
DecMax = Annotated[float, typer.Option("--dec-max", help="Region: highest Dec, degrees.")]


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit (2: bad input or usage)."""
    print(f"lsdr: error: {message}", file=sys.stderr)
    raise SystemExit(code)


LIBRARY_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)
"""The base of the usage errors Typer's (vendored or not) Click raises while parsing."""


def main() -> None:
    """Console-script entry point: :func:`run_main`; a run whose server went away ends at once.

    Its units are reported and its cluster and lock let go by then; Prefect's services would
    only wait at exit to send what the server will never get (``infra/server_watch.py``).
    """
    try:
        run_main()
    except SystemExit as end:
        _end_if_offline(end.code if isinstance(end.code, int) else 1 if end.code else 0)
        raise
    _end_if_offline(0)


def _end_if_offline(code: int) -> None:
    """``os._exit(code)`` when this process's run lost its Prefect server, else nothing."""
    watch = sys.modules.get("lsdr.infra.server_watch")
    if watch is not None and watch.server_lost():
        watch.exit_now(code)


def run_main() -> None:
    """Run the app; usage and survey errors become one line.

    The CLI library's own usage errors (a value of the wrong type, an unknown option) are
    printed as lsdr's are (:func:`lsdr.options_check.library_error_line`), not as a usage
    box; ``--help`` and a command given without arguments still show the help.
    """
    from lsdr.run_report import EXIT_ENVIRONMENT, EXIT_USAGE

    try:
        code = app(standalone_mode=False)
    except LIBRARY_ERROR as err:
        status = int(getattr(err, "exit_code", EXIT_USAGE))
        if type(err).__name__ == "NoArgsIsHelpError":
            raise SystemExit(status) from None  # the help is printed already
        from lsdr.options_check import library_error_line

        fail(library_error_line(err, sys.argv[1:]), status)
    except typer.Abort:
        fail("aborted", 1)
    except SurveyError as err:
        # Exit 3 for a missing dependency outside any unit (a dry-run publish without rsync).
        from lsdr.survey.core.errors import MissingDependencyError

        fail(str(err), EXIT_ENVIRONMENT if isinstance(err, MissingDependencyError) else EXIT_USAGE)
    except InfraError as err:  # the Prefect server's: not the survey's, reported the same way
        fail(str(err), EXIT_USAGE)
    if isinstance(code, int) and code != 0:
        raise SystemExit(code)  # typer.Exit(code) from a command, or 130 for Ctrl-C


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Release directory to write the survey into.")],
    camera: Annotated[
        list[str] | None,
        typer.Option(help="Camera(s): 90prime, mosaic, decam. Default: 90prime g,r + mosaic z."),
    ] = None,
    band: Annotated[
        list[str] | None, typer.Option(help="Only these bands of the chosen cameras.")
    ] = None,
    passes: Annotated[int, typer.Option(help="Dithered passes per camera and band.")] = 2,
    ra_min: RaMin = 180.0,
    ra_max: RaMax = 181.0,
    dec_min: DecMin = 32.0,
    dec_max: DecMax = 33.0,
    seed: Annotated[
        int, typer.Option(help="Random seed: the same seed gives identical files.")
    ] = 1,
    binning: Annotated[
        int, typer.Option(help="Pixel binning (1 = native pixels; the demo uses 2).")
    ] = DEMO_BINNING,
    workers: Annotated[int, typer.Option(help="Processes rendering exposures.")] = 2,
) -> None:
    """Write a synthetic survey: CP-like images, a Gaia-like reference catalogue and the truth.

    The images are ooi/ood/oow .fits.fz files as the Community Pipeline writes them; the truth
    catalogue (truth/truth.fits) and the CCD truth (truth/truth-ccds.fits) are what the release
    is checked against. The same seed gives identical files.
    """
    from lsdr import options_check as check

    check.output_dir("--out", out)
    region = grid.RaDecBox(ra_min, ra_max, dec_min, dec_max)
    _simulate(out, check.simulation(camera, band, passes, region, seed, binning, workers))


def _simulate(out: Path, config: SimulationConfig) -> None:
    """Run the simulator (its options checked already) and report what it wrote."""
    import time

    from lsdr.survey.simulate.simulator import simulate_survey

    start = time.monotonic()
    result = simulate_survey(out, config)
    out.mkdir(parents=True, exist_ok=True)
    if result.reused:
        print(f"survey already simulated with this configuration in {out}: nothing written")
        return
    print(
        f"simulated {result.exposures} exposures ({result.ccds} CCDs), {result.sources} sources, "
        f"{result.reference_stars} reference stars in {time.monotonic() - start:.1f} s -> {out}"
    )


@app.command(
    epilog="Example: lsdr demo --out demo-release (then: lsdr status --release-dir demo-release)",
)
def demo(
    out: Annotated[Path, typer.Option("--out", help="Release directory for the demo.")] = Path(
        "demo-release"
    ),
    seed: Annotated[int, typer.Option(help="Random seed of the synthetic survey.")] = 1,
    workers: Annotated[int, typer.Option(help="Dask workers (and processes rendering).")] = 2,
    tractor: Annotated[
        bool,
        typer.Option(help="Run the whole release (tractor and after); off: pre-tractor only."),
    ] = True,
    engine: Annotated[
        str | None,
        typer.Option(
            "--engine",
            help="Engine of the tractor phase: lite (lsdr's own runbrick, the settings' default) "
            "or legacypipe (the real runbrick, on lite's pre-tractor products; needs "
            "`make legacypipe`).",
        ),
    ] = None,
    wait: Wait = False,
    verbose: Verbose = False,
) -> None:
    """The cookbook's worked example: simulate RA 180-181, Dec 32-33, then run the release.

    Simulates 90Prime g, r and Mosaic z images of the 15 bricks with a truth catalogue, then
    runs every phase with the lite engine: discover, zeropoints, merge, kdtree, bricks, the lite
    runbrick on each brick, bright neighbours, depth histogram, brick summary, sweeps, external
    matches and packaging. It ends with the release summary, where the products are and the
    plots; opens nothing. A rerun recomputes nothing. The brick grids have the demo's binned
    pixels (1800² at 0.524″: the whole brick, a quarter of the pixels of 3600² at 0.262″).
    With --engine legacypipe each brick runs through the real runbrick instead, reading lite's
    CCD tables, calibs and reference catalogues (the other phases are lite's either way).
    """
    from lsdr import options_check as check
    from lsdr.infra.settings import load_settings
    from lsdr.run_cli import run_pretractor, run_release
    from lsdr.survey.core.layout import ReleaseLayout

    # Every option before the simulation writes anything: the run's, then the simulator's.
    check.output_dir("--out", out)
    overrides = {"n_workers": workers, **({"engine": engine} if engine is not None else {})}
    check.setting_overrides(overrides)
    load_settings(out, **overrides)  # the file's and environment's too (the engine)
    region = grid.RaDecBox(*NAMED_REGIONS["cookbook"])
    _simulate(out, check.simulation(None, None, 2, region, seed, DEMO_BINNING, workers))
    layout = ReleaseLayout(out)
    try:
        if tractor:
            run_release(
                out,
                region="cookbook",
                workers=workers,
                width=DEMO_BRICK_WIDTH,
                height=DEMO_BRICK_WIDTH,
                pixscale=DEMO_BRICK_PIXSCALE,
                engine=engine,
                wait=wait,
                verbose=verbose,
            )
        else:
            run_pretractor(out, region="cookbook", workers=workers, wait=wait, verbose=verbose)
    finally:
        from lsdr.infra.prefect_server import server_status

        info = server_status(layout.state_dir)
        if info is not None:
            print(
                f"Prefect UI: {info.url.removesuffix('/api')} "
                f"(stop it: lsdr server down --release-dir {out})"
            )
    touched = layout.brick_list.read_text().split()
    print(f"{len(touched)} bricks in the brick list ({layout.brick_list})")
    if not tractor:
        print("\n".join(touched))
        return
    from lsdr.flows.release import release_plots

    # A few lines, not two per brick: the whole output stays under 80 lines (tests/test_demo.py).
    for first in range(0, len(touched), 8):
        print("  " + " ".join(touched[first : first + 8]))
    made = [b for b in touched if layout.tractor(b).exists()]
    imaged = [b for b in touched if layout.coadd_jpeg(b, "image").exists()]
    if made:
        example = made[0]
        print(f"each brick's catalogue and colour image, e.g. {example}:")
        print(f"  {layout.tractor(example)}")
        print(f"  {layout.coadd_jpeg(example, 'image')}")
    for what, have in (("catalogue", made), ("colour image", imaged)):
        if missing := [b for b in touched if b not in have]:
            print(f"  no {what}: {' '.join(missing)}")
    print(f"status of every unit: lsdr status --release-dir {out}")
    # Last, where a person looks: the summary, then where the products and plots are.
    print(f"release directory: {layout.root}")
    summary = layout.release_summary
    if summary.exists():
        print("\n".join(line for line in summary.read_text().splitlines() if line.strip()))
    else:
        print("plots:")
        for plot in release_plots(layout):
            print(f"  {plot}")


@app.command()
def version() -> None:
    """Print lsdr's version."""
    out.print(__version__)


def _brick_table(bricks: list[grid.Brick], title: str) -> Table:
    table = Table(title=title)
    for column in ("brickname", "brickid", "ra", "dec", "ra1", "ra2", "dec1", "dec2"):
        table.add_column(column, justify="right", no_wrap=True, min_width=max(len(column), 9))
    for b in bricks:
        table.add_row(
            b.brickname,
            str(b.brickid),
            *(f"{v:.4f}" for v in (b.ra, b.dec, b.ra1, b.ra2, b.dec1, b.dec2)),
        )
    return table


@bricks_app.command("info")
def bricks_info(names: Annotated[list[str], typer.Argument(help="Brick names.")]) -> None:
    """Show the grid row of each named brick (the name is validated against the grid)."""
    out.print(_brick_table([grid.brick_by_name(n) for n in names], "bricks"))


@bricks_app.command("at")
def bricks_at(
    ra: Annotated[float, typer.Argument(help="RA, degrees [0, 360).")],
    dec: Annotated[float, typer.Argument(help="Dec, degrees [-90, 90].")],
) -> None:
    """Print the brick that holds (RA, Dec)."""
    print(grid.brick_radec(ra, dec).brickname)


@bricks_app.command("list")
def bricks_list(
    ra_min: RaMin = 180.0,
    ra_max: RaMax = 181.0,
    dec_min: DecMin = 32.0,
    dec_max: DecMax = 33.0,
    overlapping: Annotated[
        bool,
        typer.Option(help="All bricks overlapping the box, not only those centred in it."),
    ] = False,
) -> None:
    """Print the bricks of a region, one name a line (queue_calibs' region cut)."""
    box = grid.RaDecBox(ra_min, ra_max, dec_min, dec_max)
    found = grid.bricks_overlapping_box(box) if overlapping else grid.bricks_in_region(box)
    if not found:
        fail(f"no bricks in region RA {ra_min:g}..{ra_max:g}, Dec {dec_min:g}..{dec_max:g}")
    for b in found:
        print(b.brickname)


def touching_bricks(survey_dir: Path, box: grid.RaDecBox) -> list[grid.Brick]:
    """Bricks of the region touched by the survey's CCDs (legacypipe's queue_calibs)."""
    from lsdr.survey.core.layout import ReleaseLayout
    from lsdr.survey.pretractor.footprints import survey_footprints

    fp = survey_footprints(ReleaseLayout(survey_dir))
    return grid.bricks_touching_ccds(
        grid.bricks_in_region(box), fp.ra, fp.dec, fp.corner_ra, fp.corner_dec
    )


@bricks_app.command("touching")
def bricks_touching(
    survey_dir: Annotated[
        Path, typer.Option("--survey-dir", help="Release/survey directory with images/.")
    ],
    ra_min: RaMin = 180.0,
    ra_max: RaMax = 181.0,
    dec_min: DecMin = 32.0,
    dec_max: DecMax = 33.0,
) -> None:
    """Print the region's bricks that the survey's CCDs touch (as queue_calibs --touching)."""
    box = grid.RaDecBox(ra_min, ra_max, dec_min, dec_max)
    for b in touching_bricks(survey_dir, box):
        print(b.brickname)


@bricks_app.command("write-table")
def bricks_write_table(
    path: Annotated[Path, typer.Argument(help="Output, e.g. survey-bricks.fits.gz.")],
) -> None:
    """Write the whole grid (662,174 bricks) as legacypipe's survey-bricks table."""
    grid.write_survey_bricks(path)
    print(path)


tidy(app)  # last: every command is registered
