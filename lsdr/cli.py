"""The ``lsdr`` command: one entry point for every phase of a release.

Errors in the survey's inputs (a brick name that is not on the grid, a region off the sky, an
unknown camera, a file that cannot be read) print one line naming the problem and exit with
status 2, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lsdr import __version__
from lsdr.run_cli import ledger_app, recover, retry, run_app, status
from lsdr.server_cli import app as server_app
from lsdr.survey import bricks as grid
from lsdr.survey.errors import SurveyError
from lsdr.survey.simulate import DEMO_BINNING

DEMO_BRICK_PIXSCALE = 0.262 * DEMO_BINNING
"""The demo's brick grid pixel (″): its finest CCD pixel (Mosaic binned), not finer."""
DEMO_BRICK_WIDTH = 3600 // DEMO_BINNING
"""Brick grid side in the demo: the same 0.262° brick image as 3600² at 0.262″."""

COMING = (
    "Commands still to come (later issues): the post-tractor phases (bright neighbours, "
    "summaries, sweeps, external matches, packaging) and `run release`."
)

app = typer.Typer(
    name="lsdr",
    help="Run a DESI Legacy Imaging Surveys data release as Prefect dataflows.",
    epilog=COMING,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
bricks_app = typer.Typer(
    help="The brick grid: look up bricks, list a region's bricks, write survey-bricks.",
    no_args_is_help=True,
)
app.add_typer(bricks_app, name="bricks")
app.add_typer(run_app, name="run")
app.add_typer(ledger_app, name="ledger")
app.add_typer(server_app, name="server", help="The release's own Prefect server.")
app.command()(status)
app.command()(retry)
app.command()(recover)

out = Console()

RaMin = Annotated[float, typer.Option("--ra-min", help="Region: lowest RA, degrees.")]
RaMax = Annotated[float, typer.Option("--ra-max", help="Region: highest RA, degrees.")]
DecMin = Annotated[float, typer.Option("--dec-min", help="Region: lowest Dec, degrees.")]
DecMax = Annotated[float, typer.Option("--dec-max", help="Region: highest Dec, degrees.")]


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit (2: bad input or usage)."""
    print(f"lsdr: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def main() -> None:
    """Console-script entry point: run the app, turning survey errors into one-line exits."""
    try:
        app()
    except SurveyError as err:
        fail(str(err))


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
    """Write a synthetic survey: CP-like images, a Gaia-like reference catalogue and the truth."""
    _simulate(
        out,
        camera,
        band,
        passes,
        grid.RaDecBox(ra_min, ra_max, dec_min, dec_max),
        seed,
        binning,
        workers,
    )


def _simulate(
    out: Path,
    cameras: list[str] | None,
    bands: list[str] | None,
    passes: int,
    region: grid.RaDecBox,
    seed: int,
    binning: int,
    workers: int,
) -> None:
    """Run the simulator and report what it wrote."""
    import time

    from lsdr.survey.simulate import SimulationConfig, parse_passes, simulate_survey

    specs = parse_passes(cameras, bands, passes)
    config = SimulationConfig(
        seed=seed, region=region, passes=specs, binning=binning, workers=workers
    )
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


@app.command()
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
) -> None:
    """The cookbook's worked example: simulate RA 180-181, Dec 32-33, then run the release.

    Pre-tractor phases, the lite runbrick on the 15 bricks, then bright neighbours, depth
    histogram, brick summary, sweeps, external matches and packaging; prints the release
    directory, the summary table and the plots.  Opens nothing.  A rerun recomputes nothing.
    The brick grids have the demo's binned pixels (1800² at 0.524″: the whole brick, a quarter
    of the pixels of 3600² at 0.262″).
    """
    from lsdr.run_cli import NAMED_REGIONS, run_pretractor, run_release
    from lsdr.survey.layout import ReleaseLayout

    region = grid.RaDecBox(*NAMED_REGIONS["cookbook"])
    _simulate(out, None, None, 2, region, seed, DEMO_BINNING, workers)
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
            )
        else:
            run_pretractor(out, region="cookbook", workers=workers)
    finally:
        from lsdr.infra.prefect_server import server_status

        info = server_status(layout.state_dir)
        if info is not None:
            print(
                f"Prefect UI: {info.url.removesuffix('/api')} "
                f"(stop it: lsdr server down --release-dir {out})"
            )
    touched = (out / "bricks.txt").read_text().split()
    print(f"{len(touched)} bricks in the brick list ({out / 'bricks.txt'})")
    if not tractor:
        print("\n".join(touched))
        return
    from lsdr.flows.release import SUMMARY_FILE, release_plots

    print(f"release directory: {layout.root}")
    summary = layout.state_dir / SUMMARY_FILE
    if summary.exists():
        print(summary.read_text())
    print("brick     catalogue / colour image (coadd)")
    for name in touched:
        cat, jpg = layout.tractor(name), layout.coadd_jpeg(name, "image")
        print(f"{name}  {cat if cat.exists() else '(no catalogue)'}")
        print(f"{'':8}  {jpg if jpg.exists() else '(no image)'}")
    print("plots:")
    for plot in release_plots(layout):
        print(f"  {plot}")
    print(f"status of every unit: lsdr status --release-dir {out}")


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
    from lsdr.survey.footprints import survey_footprints
    from lsdr.survey.layout import ReleaseLayout

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
    """Print the region's bricks that the survey's CCDs touch (``queue_calibs --touching``)."""
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
