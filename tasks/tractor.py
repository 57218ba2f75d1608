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

MEMORY_BASE_MB = 400.0
"""Peak memory of a brick with no pixels: the interpreter, numpy/astropy/scipy, the tables."""
MEMORY_PER_MPIX_MB = 110.0
"""Per million brick pixels: the coadd, detection and maskbits maps of every band."""
MEMORY_PER_CCD_MB = 25.0
"""Per overlapping CCD: its tim (image, inverse variance, DQ, sky) and resampling buffers."""


CHECKPOINT_PERIOD_S = 60.0
"""Default seconds between checkpoint rewrites while a brick fits its blobs."""


def brick_memory_mb(n_ccds: int, width: int = 3600, height: int = 3600) -> int:
    """Estimated peak memory (MB) of the lite runbrick on a brick (bench/bench_runbrick.py)."""
    mpix = width * height / 1e6
    return int(MEMORY_BASE_MB + MEMORY_PER_MPIX_MB * mpix + MEMORY_PER_CCD_MB * n_ccds)


def ccd_counts(
    layout: ReleaseLayout, bricks: Sequence[str], width: int = 3600, pixscale: float = 0.262
) -> dict[str, int]:
    """CCDs (``ccd_cuts == 0``) whose footprint overlaps each brick's image: the memory input.

    One vectorised footprint test over the merged survey-ccds tables, as the brick list uses.
    """
    from lsdr.survey import bricks as grid
    from lsdr.survey.bricklist import ccd_footprints
    from lsdr.survey.ccdtables import read_survey_ccds

    wanted = {grid.brick_by_name(b).brickid: b for b in bricks}
    counts = dict.fromkeys(bricks, 0)
    if not wanted or not survey_ccds_tables(layout):
        return counts
    ccds = read_survey_ccds(layout)
    if len(ccds) == 0:
        return counts
    _, _, corner_ra, corner_dec = ccd_footprints(ccds)
    _, ids = grid.bricks_touching_polygons(
        corner_ra, corner_dec, width_pix=width, pixscale=pixscale
    )
    found, n = np.unique(ids, return_counts=True)
    for brickid, count in zip(found.tolist(), n.tolist(), strict=True):
        if brickid in wanted:
            counts[wanted[brickid]] = int(count)
    return counts


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
    n_ccds: Mapping[str, int] | None = None,
) -> list[Unit]:
    """One unit per brick of the brick list, each with its memory estimate.

    ``fit_budget_s`` (the time budget) and ``checkpoint_period`` are execution flags;
    ``n_ccds`` (CCDs per brick, default: counted from the survey-ccds tables) sizes the
    memory estimates.
    """
    counts = n_ccds if n_ccds is not None else ccd_counts(layout, bricks, width, pixscale)
    inputs = tuple(str(p) for p in (*survey_ccds_tables(layout), *gaia_chunks(layout)))
    options = (
        ("width", width),
        ("height", height),
        ("pixscale", pixscale),
        ("bands", list(bands)),
        ("release", release),
        ("keep_checkpoints", keep_checkpoints),
    )
    flags: list[tuple[str, float]] = []
    if checkpoint_period is not None:
        flags.append(("checkpoint_period", checkpoint_period))
    if fit_budget_s is not None:
        flags.append(("fit_budget_s", fit_budget_s))
    return [
        Unit(
            "tractor",
            brick,
            inputs,
            options,
            threads=threads,
            flags=tuple(flags),
            memory_mb=brick_memory_mb(counts.get(brick, 0), width, height),
        )
        for brick in bricks
    ]


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
