"""``lsdr runbrick``: one brick, or one custom region, through either engine, as runbrick takes it.

runbrick's own flags (``--survey-dir``, ``--outdir``, ``--brick`` or ``--radec RA DEC --width W
--height H``, ``--zoom``, ``--bands``, ``--threads``, ``--checkpoint-period``, ``--bail-out``…)
plus ``--engine`` and ``--launcher``.  No Prefect and no cluster: the engine runs the brick
here, the way a survey scientist runs runbrick on a laptop to look at one brick.  Outputs go
to ``--outdir`` in legacypipe's layout (``tractor/<bri>/``, ``tractor/cus/`` for a custom
region); an output directory other than the survey's links the survey's inputs into itself, so
both engines read and write one directory tree.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from lsdr.cli_options import Engine, Launcher
from lsdr.survey.core.errors import FailureClass, UsageError

console = Console(stderr=True)

SURVEY_INPUTS = ("images", "calib", "gaia", "survey-bricks.fits.gz", "tycho2.kd.fits")
"""What runbrick reads from a survey dir besides the CCD tables (``survey-ccds*``)."""
EXIT_FAILED = 1
"""The exit status of a brick that failed (its failure class and reason are printed)."""


def link_survey(survey_dir: Path, outdir: Path) -> None:
    """Make ``outdir`` a survey dir too: links to ``survey_dir``'s inputs and CCD tables.

    An existing file or link of the same name is left alone (a rerun, or the user's own).
    """
    outdir.mkdir(parents=True, exist_ok=True)
    names = [*SURVEY_INPUTS, *(p.name for p in sorted(survey_dir.glob("survey-ccds*")))]
    for name in names:
        target, link = survey_dir / name, outdir / name
        if target.exists() and not link.exists() and not link.is_symlink():
            os.symlink(target.resolve(), link)


def runbrick(
    survey_dir: Annotated[
        Path, typer.Option("--survey-dir", help="The survey dir: images/, calib/, survey-ccds*.")
    ] = Path("."),
    outdir: Annotated[
        Path | None,
        typer.Option("--outdir", "-d", help="Where products go (default: the survey dir)."),
    ] = None,
    brick: Annotated[
        str | None, typer.Option("--brick", "-b", help="A brick of the grid (1773p595).")
    ] = None,
    radec: Annotated[
        tuple[float, float] | None,
        typer.Option("--radec", metavar="RA DEC", help="A custom region centred here (degrees)."),
    ] = None,
    width: Annotated[int, typer.Option("--width", "-W", help="Grid width, pixels.")] = 3600,
    height: Annotated[int, typer.Option("--height", "-H", help="Grid height, pixels.")] = 3600,
    pixscale: Annotated[float, typer.Option("--pixscale", help="Arcsec per pixel.")] = 0.262,
    zoom: Annotated[
        tuple[int, int, int, int] | None,
        typer.Option("--zoom", metavar="X0 X1 Y0 Y1", help="Only pixels [x0:x1, y0:y1]."),
    ] = None,
    bands: Annotated[str, typer.Option("--bands", help="Comma-separated bands.")] = "g,r,z",
    release: Annotated[int, typer.Option("--release", help="RELEASE in the catalogue.")] = 10000,
    threads: Annotated[int, typer.Option("--threads", help="Processes runbrick uses.")] = 1,
    checkpoint_period: Annotated[
        float,
        typer.Option("--checkpoint-period", help="Seconds between checkpoint rewrites."),
    ] = 600.0,
    bail_out: Annotated[
        bool, typer.Option("--bail-out", help="Skip the blobs the checkpoint lacks (BAILOUT).")
    ] = False,
    skip: Annotated[
        bool, typer.Option("--skip", help="Do nothing if the catalogue exists and reads.")
    ] = False,
    force_all: Annotated[
        bool, typer.Option("--force-all", "-F", help="Ignore the stage pickles.")
    ] = False,
    no_wise: Annotated[  # accepted as runbrick's command lines carry it; it is the only mode
        bool,
        typer.Option(
            "--no-wise", help="No unWISE forced photometry (always so: no unWISE coadds here)."
        ),
    ] = True,
    release_flavour: Annotated[
        str,
        typer.Option(
            "--release-flavour",
            help="Catalogue schema lite writes: dr11 (the vendored legacypipe's), dr10, dr9.",
        ),
    ] = "dr11",
    engine: Engine = None,
    launcher: Launcher = None,
) -> None:
    """runbrick on one brick or custom region with the lite or the real legacypipe engine."""
    from lsdr.infra.settings import load_settings
    from lsdr.survey.core.layout import ReleaseLayout, checked_brick
    from lsdr.survey.engines.base import Outcome
    from lsdr.survey.engines.registry import engine_config, get_engine
    from lsdr.survey.runbrick.options import RunbrickOptions

    if (brick is None) == (radec is None):
        raise UsageError("give exactly one of --brick and --radec RA DEC")
    if brick is not None:
        checked_brick(brick)
    if not survey_dir.is_dir():
        raise UsageError(f"--survey-dir {survey_dir}: not a directory")
    out = (outdir or survey_dir).resolve()
    overrides = {k: v for k, v in {"engine": engine, "launcher": launcher}.items() if v}
    settings = load_settings(out if out.is_dir() else survey_dir, **overrides)
    name = settings.engine
    if name != "lite" and release_flavour != "dr11":
        raise UsageError(
            f"--release-flavour {release_flavour}: the {name} engine writes its own schema "
            "(legacypipe DR11: dr11)"
        )
    options = RunbrickOptions(
        bands=tuple(b for b in bands.split(",") if b),
        width=width,
        height=height,
        pixscale=pixscale,
        zoom=zoom,
        radec=radec,
        release=release,
        threads=threads,
        checkpoint_period=checkpoint_period,
        bail_out=bail_out,
        skip=skip,
        force_all=force_all,
        release_flavour=release_flavour,
    )
    brickname = brick if brick is not None else options.brickname
    assert brickname is not None
    if out != survey_dir.resolve():
        link_survey(survey_dir.resolve(), out)
    layout = ReleaseLayout(out)
    options = replace(options, checkpoint=str(layout.checkpoint(brickname)))
    chosen = get_engine(name, engine_config(name, settings))
    console.print(
        f"runbrick {brickname} with {chosen.version} → {out}", highlight=False, soft_wrap=True
    )
    output = chosen.runbrick(layout, brickname, options)
    if output.outcome is Outcome.FAILED:
        failure = FailureClass(output.failure_class or FailureClass.SCIENCE)
        console.print(
            f"lsdr: runbrick failed ({failure}): {output.message}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(EXIT_FAILED)
    if output.outcome is Outcome.NO_DATA:
        reason = output.summary.get("reason") or output.summary.get("status") or "no CCDs"
        console.print(f"{brickname}: nothing to do ({reason})", highlight=False, soft_wrap=True)
        return
    console.print(f"{brickname}: {layout.tractor(brickname)}", highlight=False, soft_wrap=True)
