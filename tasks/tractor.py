"""The tractor phase's units: one brick each, through the unit's engine's runbrick.

A brick's inputs are what runbrick reads for it: its CCDs' rows of the survey-ccds tables (by
digest, so a change to another CCD's row leaves it done), those CCDs' images, DQ and weight
maps and calibs, and the reference-catalogue chunks it reads; its options are the runbrick
flags that change the result.  Every brick runs with a
checkpoint in the release's shared ``checkpoints/`` directory, so a brick rerun after its
worker died resumes from the blobs already fitted; checkpoints and stage pickles are removed
once the brick is done, unless kept on request.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.bricks import BRICK_PIXSCALE, BRICK_SIZE_PIX
from lsdr.survey.core.cameras import DEFAULT_BANDS
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import TractorOptions
from lsdr.survey.engines.base import Outcome
from lsdr.tasks.unit import Unit, UnitOutput, unit_engine

RUNBRICK_OPTIONS = (
    "bands",
    "width",
    "height",
    "pixscale",
    "zoom",
    "release",
    "outliers",
    "bail_out",
)
"""The tractor unit options that are runbrick's (part of the brick's identity)."""
RUNBRICK_FLAGS = ("checkpoint_period", "bail_out", "fit_budget_s")
"""The execution flags that are runbrick's (how it runs, not what it makes)."""
MEMORY_BASE_MB = 153.0
"""Peak memory of a brick with no pixels: the interpreter, numpy/astropy/scipy, the tables."""
MEMORY_PER_BRICK_MPIX_MB = 120.0
"""Per million brick pixels: coadd, detection and maskbits maps (bench/bench_runbrick.py fitted
94; +26 since the coadds stage keeps each band's model and weight for the model JPEGs)."""
MEMORY_PER_CCD_MPIX_MB = 17.0
"""Per million CCD pixels read under the brick: tims (image, weight, DQ, sky) and buffers."""


def brick_memory_mb(
    ccd_mpix: float, width: int = BRICK_SIZE_PIX, height: int = BRICK_SIZE_PIX
) -> int:
    """Estimated peak memory (MB) of the lite runbrick on a brick (docs/benchmarks.md).

    ``ccd_mpix``: millions of CCD pixels under the brick, summed over its CCDs.  The fit of
    bench/bench_runbrick.py (worst error 3 % over its runs); a term per CCD *count* fits badly.
    """
    mpix = width * height / 1e6
    return int(MEMORY_BASE_MB + MEMORY_PER_BRICK_MPIX_MB * mpix + MEMORY_PER_CCD_MPIX_MB * ccd_mpix)


def ccd_pixels(
    layout: ReleaseLayout,
    bricks: Sequence[str],
    width: int = BRICK_SIZE_PIX,
    pixscale: float = BRICK_PIXSCALE,
) -> dict[str, tuple[int, float]]:
    """Per brick: CCDs (``ccd_cuts == 0``) overlapping its image, and their pixels under it (Mpix).

    One vectorised footprint test over the merged survey-ccds tables, as the brick list uses.
    A CCD's pixels under the brick are bounded by the whole CCD and by the brick's area in that
    CCD's pixels (an upper bound: partial overlaps count as full).
    """
    from lsdr.survey.pretractor.ccdtables import read_survey_ccds

    load: dict[str, tuple[int, float]] = dict.fromkeys(bricks, (0, 0.0))
    if not bricks or not layout.survey_ccds_tables():
        return load
    ccds = read_survey_ccds(layout)
    for brick, index in _touching(ccds, bricks, width, pixscale).items():
        under = _pixels_under(ccds[index], width, pixscale)
        load[brick] = (len(index), float(under.sum()) / 1e6)
    return load


def _touching(
    ccds: np.ndarray, bricks: Sequence[str], width: int, pixscale: float, pad: int = 0
) -> dict[str, np.ndarray]:
    """Per brick, the indices of the CCD rows whose footprint overlaps its image.

    The vectorised footprint test of the brick list, with the image ``pad`` pixels wider on
    each side.
    """
    from lsdr.survey.core import bricks as grid
    from lsdr.survey.pretractor.bricklist import ccd_footprints

    wanted = {grid.brick_by_name(b).brickid: b for b in bricks}
    out: dict[str, list[int]] = {b: [] for b in bricks}
    if len(ccds) == 0 or not wanted:
        return {b: np.zeros(0, np.int64) for b in bricks}
    _, _, corner_ra, corner_dec = ccd_footprints(ccds)
    index, ids = grid.bricks_touching_polygons(
        corner_ra, corner_dec, width_pix=width + 2 * pad, pixscale=pixscale
    )
    for i, brickid in zip(index.tolist(), ids.tolist(), strict=True):
        if brickid in wanted:
            out[wanted[brickid]].append(i)
    return {b: np.asarray(v, np.int64) for b, v in out.items()}


def _pixels_under(ccds: np.ndarray, width: int, pixscale: float) -> np.ndarray:
    """Upper bound of each CCD's pixels under a brick of ``width`` pixels of ``pixscale``."""
    ccd_scale = 3600.0 * np.sqrt(
        np.abs(ccds["cd1_1"] * ccds["cd2_2"] - ccds["cd1_2"] * ccds["cd2_1"])
    )
    brick_side = width * pixscale
    return np.asarray(
        np.minimum(
            ccds["width"].astype(np.float64) * ccds["height"],
            (brick_side / np.maximum(ccd_scale, 1e-6)) ** 2,
        ),
        np.float64,
    )


PREFILTER_PAD_PIX = 4
"""Brick pixels added on each side in the vectorised footprint test that picks the CCDs the
exact per-CCD test (runbrick's own) then checks: a superset, whatever the rounding."""


@dataclass(frozen=True)
class BrickReads:
    """What runbrick reads for one brick: its CCD rows (digest) and the files behind them."""

    rows_digest: str
    files: tuple[str, ...]
    ccd_mpix: float


def brick_reads(
    layout: ReleaseLayout,
    bricks: Sequence[str],
    *,
    width: int,
    height: int,
    pixscale: float,
    bands: Sequence[str] = DEFAULT_BANDS,
) -> dict[str, BrickReads]:
    """Per brick, the survey-ccds rows runbrick selects and every file it will read.

    The rows are runbrick's own selection (``select_ccds``: cuts passed, band, pixels under the
    brick), taken among the candidates of the vectorised footprint test; their digest stands
    for the tables, so a brick reruns only when one of *its* rows changes, appears or goes.
    Files: each CCD's image, DQ and weight maps, its per-CCD and merged PsfEx and sky files
    (whichever exists is read), the Gaia chunks the refs stage reads and ``tycho2.kd.fits``.
    """
    from lsdr.survey.core.refcat import gaia_chunk_paths
    from lsdr.survey.pretractor.calibtable import text
    from lsdr.survey.pretractor.ccdtables import read_survey_ccds
    from lsdr.survey.runbrick.refs import reference_points
    from lsdr.survey.runbrick.tims import ccds_touching_brick
    from lsdr.survey.runbrick.types import BrickGeometry

    ccds = read_survey_ccds(layout, kept_only=True) if layout.survey_ccds_tables() else None
    candidates = (
        _touching(ccds, bricks, width, pixscale, PREFILTER_PAD_PIX) if ccds is not None else {}
    )
    out: dict[str, BrickReads] = {}
    for brick in bricks:
        geom = BrickGeometry.for_brick(brick, width=width, height=height, pixscale=pixscale)
        rows: npt.NDArray[np.void] = (
            ccds_touching_brick(ccds[candidates[brick]], geom, bands)
            if ccds is not None
            else np.zeros(0, [("image_filename", "S1")])
        )
        if len(rows):
            rows = rows[np.lexsort((rows["ccdname"], rows["expnum"]))]
        digest = hashlib.sha256(
            json.dumps(str(rows.dtype.descr)).encode() + rows.tobytes()
        ).hexdigest()
        files: list[str] = []
        for row in rows:
            image, ccdname = text(row["image_filename"]), text(row["ccdname"])
            files += [
                str(layout.image(image)),
                str(layout.image_companion(image, "ood")),
                str(layout.image_companion(image, "oow")),
                str(layout.sky_single(image, ccdname)),
                str(layout.sky_merged(image)),
                str(layout.psfex_merged(image)),
                str(layout.psfex_single(image, ccdname)),
            ]
        files += [str(p) for p in gaia_chunk_paths(layout, *reference_points(geom))]
        files.append(str(layout.tycho2_kd))
        mpix = float(_pixels_under(rows, width, pixscale).sum()) / 1e6 if len(rows) else 0.0
        out[brick] = BrickReads(digest, tuple(dict.fromkeys(files)), mpix)
    return out


def plan_tractor(
    layout: ReleaseLayout,
    bricks: Sequence[str],
    options: TractorOptions,
    *,
    threads: int = 1,
) -> list[Unit]:
    """One unit per brick of the brick list, with what it reads and its memory estimate.

    The unit's options are what changes the brick's products (the grid, runbrick's default
    bands and release number, outliers, kept checkpoints); ``fit_budget_s`` and
    ``checkpoint_period`` are execution flags.  A survey-ccds table that cannot be read makes
    every brick a unit failed in planning (science, naming the table), not an error of the
    phase.
    """
    from lsdr.survey.core.errors import InputFileError
    from lsdr.survey.runbrick.options import RunbrickOptions

    o, runbrick = options, RunbrickOptions()
    try:
        reads = brick_reads(
            layout,
            bricks,
            width=o.width,
            height=o.height,
            pixscale=o.pixscale,
            bands=runbrick.bands,
        )
    except InputFileError as err:
        tables = tuple(str(p) for p in layout.survey_ccds_tables())
        return [Unit("tractor", brick, tables).unplannable(err) for brick in bricks]
    unit_options = (
        ("width", o.width),
        ("height", o.height),
        ("pixscale", o.pixscale),
        *((("zoom", list(o.zoom)),) if o.zoom is not None else ()),
        *((("bail_out", True),) if o.bail_out else ()),
        ("bands", list(runbrick.bands)),
        ("release", runbrick.release),
        ("keep_checkpoints", o.keep_checkpoints),
        ("outliers", o.outliers),
    )
    flags: list[tuple[str, float]] = []
    if o.checkpoint_period is not None:
        flags.append(("checkpoint_period", o.checkpoint_period))
    if o.fit_budget_s is not None:
        flags.append(("fit_budget_s", o.fit_budget_s))
    return [
        Unit(
            "tractor",
            brick,
            reads[brick].files,
            unit_options,
            threads=threads,
            flags=tuple(flags),
            memory_mb=brick_memory_mb(reads[brick].ccd_mpix, o.width, o.height),
            read_rows=(("survey-ccds", reads[brick].rows_digest),),
        )
        for brick in bricks
    ]


def bail_out_after_timeout(unit: Unit) -> Unit | None:
    """The tractor phase's timeout policy: rerun from the checkpoint with ``--bail-out``, once."""
    if unit.flag("bail_out", False) or unit.option("bail_out", False):
        return None
    return unit.with_flag("bail_out", True)


BRICK_STATUS = {Outcome.DONE: "done", Outcome.NO_DATA: "nothing-to-do"}
"""A brick's ``status`` in its summary by outcome, unless its engine gives one (the tractor
flow lists the bricks ``nothing-to-do``: no CCDs, no catalogue)."""


FITS_SUFFIXES = (".fits", ".fits.fz", ".fits.gz")
"""Inputs checked for truncation when a brick fails on its data."""


def with_bad_inputs(unit: Unit, output: UnitOutput) -> UnitOutput:
    """A science failure's message with the brick's unreadable FITS inputs named, if any.

    runbrick's traceback says what failed (``extension not found: 1``), not which of the
    brick's dozens of files it was reading; the brick's inputs are known, so they are checked.
    """
    from lsdr.survey.core.fitsread import fits_problem

    if output.failure_class != "science":
        return output
    bad = []
    for name in unit.inputs:
        path = Path(name)
        if path.name.endswith(FITS_SUFFIXES) and path.is_file():
            problem = fits_problem(path)
            if problem is not None:
                bad.append(f"{path} is {problem}")
    if not bad:
        return output
    return replace(output, message=f"{output.message}; {'; '.join(bad)}: re-transfer the file")


def tractor_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Run the unit's engine's runbrick on one brick, resuming from its checkpoint.

    The checkpoint is removed once the brick is done (unless kept on request), never after a
    failure: the rerun resumes from it.
    """
    from lsdr.survey.runbrick.options import RunbrickOptions

    brick = unit.key
    checkpoint = layout.checkpoint(brick)
    # Only what the unit carries: every default is RunbrickOptions' own (runbrick's).
    given: dict[str, Any] = {
        name: unit.option(name) for name in RUNBRICK_OPTIONS if unit.option(name) is not None
    }
    given |= {name: unit.flag(name) for name in RUNBRICK_FLAGS if unit.flag(name) is not None}
    for name in ("bands", "zoom"):
        if name in given:
            given[name] = tuple(given[name])
    options = RunbrickOptions(checkpoint=str(checkpoint), threads=unit.threads, **given)
    output = unit_engine(unit).runbrick(layout, brick, options)
    if output.outcome is Outcome.FAILED:
        return with_bad_inputs(unit, output)
    if not unit.option("keep_checkpoints", False):
        checkpoint.unlink(missing_ok=True)
    return replace(output, summary={"status": BRICK_STATUS[output.outcome], **output.summary})


TRACTOR_OPTION_FIELDS = (
    "width",
    "height",
    "pixscale",
    "zoom",
    "bail_out",
    "keep_checkpoints",
    "outliers",
)
"""The tractor unit options that are :class:`TractorOptions` fields (what a brick was made with)."""


def recorded_options(layout: ReleaseLayout, bricks: Sequence[str]) -> dict[str, Any] | None:
    """The :class:`TractorOptions` fields the bricks' tractor units last ran with, or None.

    From their provenance sidecars (``options``), so that a brick redone later is made as the
    release made it (the demo's 1800² grid, not the default 3600²).  Bricks whose sidecar
    records no options (none yet, or written before sidecars kept them) say nothing; None when
    none says anything.  Two bricks made with other options are a :class:`UsageError`.
    """
    from lsdr.survey.core.errors import UsageError
    from lsdr.tasks.sidecars import read_sidecar, sidecar_path

    found: dict[str, dict[str, Any]] = {}
    for brick in bricks:
        data = read_sidecar(sidecar_path(layout, "tractor", brick))
        options = data.get("options") if data is not None else None
        if isinstance(options, dict) and options:
            fields = {k: options[k] for k in TRACTOR_OPTION_FIELDS if k in options}
            fields.setdefault("bail_out", False)
            found[brick] = fields
    if not found:
        return None
    (first, chosen), *others = found.items()
    for brick, fields in others:
        if fields != chosen:
            raise UsageError(
                f"bricks {first} and {brick} were made with other tractor options "
                f"({chosen} and {fields}): reprocess them separately"
            )
    return chosen
