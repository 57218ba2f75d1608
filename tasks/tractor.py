"""The tractor phase's units: one brick each, through the lite runbrick.

A brick's inputs are the CCD tables and the reference catalogue (a changed table reruns the
bricks); its options are the runbrick flags that change the result.  Every brick runs with a
checkpoint in the release's shared ``checkpoints/`` directory, so a brick rerun after its
worker died resumes from the blobs already fitted; checkpoints and stage pickles are removed
once the brick is done, unless kept on request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lsdr.survey.layout import ReleaseLayout
from lsdr.tasks.pretractor import gaia_chunks, survey_ccds_tables
from lsdr.tasks.units import Unit, UnitOutput

CHECKPOINT_PERIOD_S = 60.0
"""Default seconds between checkpoint rewrites while a brick fits its blobs."""
MEMORY_BASE_MB = 153.0
"""Peak memory of a brick with no pixels: the interpreter, numpy/astropy/scipy, the tables."""
MEMORY_PER_BRICK_MPIX_MB = 120.0
"""Per million brick pixels: coadd, detection and maskbits maps (bench/bench_runbrick.py fitted
94; +26 since the coadds stage keeps each band's model and weight for the model JPEGs)."""
MEMORY_PER_CCD_MPIX_MB = 17.0
"""Per million CCD pixels read under the brick: tims (image, weight, DQ, sky) and buffers."""


def brick_memory_mb(ccd_mpix: float, width: int = 3600, height: int = 3600) -> int:
    """Estimated peak memory (MB) of the lite runbrick on a brick (docs/benchmarks.md).

    ``ccd_mpix``: millions of CCD pixels under the brick, summed over its CCDs.  The fit of
    bench/bench_runbrick.py (worst error 3 % over its runs); a term per CCD *count* fits badly.
    """
    mpix = width * height / 1e6
    return int(MEMORY_BASE_MB + MEMORY_PER_BRICK_MPIX_MB * mpix + MEMORY_PER_CCD_MPIX_MB * ccd_mpix)


def ccd_pixels(
    layout: ReleaseLayout, bricks: Sequence[str], width: int = 3600, pixscale: float = 0.262
) -> dict[str, tuple[int, float]]:
    """Per brick: CCDs (``ccd_cuts == 0``) overlapping its image, and their pixels under it (Mpix).

    One vectorised footprint test over the merged survey-ccds tables, as the brick list uses.
    A CCD's pixels under the brick are bounded by the whole CCD and by the brick's area in that
    CCD's pixels (an upper bound: partial overlaps count as full).
    """
    from lsdr.survey import bricks as grid
    from lsdr.survey.bricklist import ccd_footprints
    from lsdr.survey.ccdtables import read_survey_ccds

    wanted = {grid.brick_by_name(b).brickid: b for b in bricks}
    load: dict[str, tuple[int, float]] = dict.fromkeys(bricks, (0, 0.0))
    if not wanted or not survey_ccds_tables(layout):
        return load
    ccds = read_survey_ccds(layout)
    if len(ccds) == 0:
        return load
    _, _, corner_ra, corner_dec = ccd_footprints(ccds)
    index, ids = grid.bricks_touching_polygons(
        corner_ra, corner_dec, width_pix=width, pixscale=pixscale
    )
    ccd_scale = 3600.0 * np.sqrt(
        np.abs(ccds["cd1_1"] * ccds["cd2_2"] - ccds["cd1_2"] * ccds["cd2_1"])
    )
    brick_side = width * pixscale
    under = np.minimum(
        ccds["width"].astype(np.float64) * ccds["height"],
        (brick_side / np.maximum(ccd_scale, 1e-6)) ** 2,
    )
    for i, brickid in zip(index.tolist(), ids.tolist(), strict=True):
        if brickid in wanted:
            n, mpix = load[wanted[brickid]]
            load[wanted[brickid]] = (n + 1, mpix + float(under[i]) / 1e6)
    return load


def plan_tractor(
    layout: ReleaseLayout,
    bricks: Sequence[str],
    *,
    width: int = 3600,
    height: int = 3600,
    pixscale: float = 0.262,
    bands: Sequence[str] = ("g", "r", "z"),
    release: int = 10000,
    keep_checkpoints: bool = False,
    threads: int = 1,
    fit_budget_s: float | None = None,
    checkpoint_period: float | None = None,
    outliers: bool = True,
    load: Mapping[str, tuple[int, float]] | None = None,
) -> list[Unit]:
    """One unit per brick of the brick list, each with its memory estimate.

    ``fit_budget_s`` (the time budget) and ``checkpoint_period`` are execution flags;
    ``load`` (per brick: CCDs and CCD Mpix under it; default: from the survey-ccds tables)
    sizes the memory estimates.  A survey-ccds table that cannot be read makes every brick a
    unit failed in planning (science, naming the table), not an error of the phase.
    """
    from lsdr.survey.errors import InputFileError

    bad_table: InputFileError | None = None
    if load is None:
        try:
            load = ccd_pixels(layout, bricks, width, pixscale)
        except InputFileError as err:
            bad_table, load = err, {}
    inputs = tuple(str(p) for p in (*survey_ccds_tables(layout), *gaia_chunks(layout)))
    options = (
        ("width", width),
        ("height", height),
        ("pixscale", pixscale),
        ("bands", list(bands)),
        ("release", release),
        ("keep_checkpoints", keep_checkpoints),
        ("outliers", outliers),
    )
    flags: list[tuple[str, float]] = []
    if checkpoint_period is not None:
        flags.append(("checkpoint_period", checkpoint_period))
    if fit_budget_s is not None:
        flags.append(("fit_budget_s", fit_budget_s))
    units = [
        Unit(
            "tractor",
            brick,
            inputs,
            options,
            threads=threads,
            flags=tuple(flags),
            memory_mb=brick_memory_mb(load.get(brick, (0, 0.0))[1], width, height),
        )
        for brick in bricks
    ]
    return units if bad_table is None else [u.unplannable(bad_table) for u in units]


def bail_out_after_timeout(unit: Unit) -> Unit | None:
    """The tractor phase's timeout policy: rerun from the checkpoint with ``--bail-out``, once."""
    if unit.flag("bail_out", False):
        return None
    return unit.with_flag("bail_out", True)


def tractor_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Run the lite runbrick on one brick, resuming from its checkpoint."""
    from lsdr.survey.runbrick.options import RunbrickOptions
    from lsdr.survey.runbrick.stages import run_brick

    brick = unit.key
    checkpoint = layout.checkpoint(brick)
    options = RunbrickOptions(
        bands=tuple(unit.option("bands", ["g", "r", "z"])),
        width=int(unit.option("width", 3600)),
        height=int(unit.option("height", 3600)),
        pixscale=float(unit.option("pixscale", 0.262)),
        release=int(unit.option("release", 10000)),
        checkpoint=str(checkpoint),
        checkpoint_period=float(unit.flag("checkpoint_period", CHECKPOINT_PERIOD_S)),
        bail_out=bool(unit.flag("bail_out", False)),
        fit_budget_s=unit.flag("fit_budget_s"),
        threads=unit.threads,
        outliers=bool(unit.option("outliers", True)),
    )
    result = run_brick(layout, brick, options)
    if not unit.option("keep_checkpoints", False):
        checkpoint.unlink(missing_ok=True)
    return UnitOutput(
        tuple(result.products),
        {
            "status": result.status,
            "ccds": result.n_ccds,
            "seconds": round(result.seconds, 1),
            **{k: v for k, v in result.fit_stats.items() if k.startswith("blobs_")},
        },
    )
