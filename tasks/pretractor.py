"""The pre-tractor phases' units: what each unit depends on, and the call into the science.

Each phase has a planner (settings and options → units with their input files, so a changed
input reprocesses exactly its units) and a unit function (module level, so Dask pickles it by
reference) that returns the files it wrote.  Zeropoints, merges, the kd-tree and the depth cut
are the unit's engine's (``survey/engines``); the image list and the brick list, which plan
what runs, are lsdr's own, whatever the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import date
from pathlib import Path

from lsdr.survey.bricks import RaDecBox
from lsdr.survey.engines.base import MergeTablesOptions, ZeropointOptions
from lsdr.survey.errors import InputFileError
from lsdr.survey.layout import ReleaseLayout
from lsdr.tasks.units import Unit, UnitOutput, unit_engine

CP_PATTERNS = ("c4d_*_oo[iwd]_*", "k4m_*_oo[iwd]_*", "ksb_*_oo[iwd]_*", "*_oki_*")
"""The CP files whose names and stamps decide what discovery finds."""


def _paths(paths: Sequence[Path]) -> tuple[str, ...]:
    return tuple(str(p) for p in paths)


READ_ERRORS = (InputFileError, OSError, ValueError, RuntimeError)
"""What reading a bad FITS file raises, through lsdr's readers (the first) or fitsio's."""


def as_input_error(path: Path, err: Exception) -> InputFileError:
    """``err`` as an :class:`InputFileError` naming ``path`` (unchanged if it already is one)."""
    from lsdr.survey.fitsread import fits_failure

    return err if isinstance(err, InputFileError) else fits_failure(path, err)


# -- discover ---------------------------------------------------------------------------------
def plan_discover(
    layout: ReleaseLayout,
    *,
    cameras: Sequence[str] | None = None,
    date_min: date | None = None,
    date_max: date | None = None,
) -> list[Unit]:
    """One unit: scan ``images/``; it reads every CP file's primary header (its inputs).

    By header digest: a CP file whose pixels change, or that is copied back over itself,
    leaves the image list done; a new, removed or re-headered file reruns the scan.
    """
    files: list[Path] = []
    if layout.images_dir.exists():
        for pattern in CP_PATTERNS:
            files.extend(layout.images_dir.rglob(pattern))
    options = (
        ("cameras", sorted(cameras) if cameras else None),
        ("date_min", date_min.isoformat() if date_min else None),
        ("date_max", date_max.isoformat() if date_max else None),
    )
    return [Unit("discover", "images", (), options, headers=_paths(sorted(set(files))))]


def discover_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Find the CP images, trim dates and duplicates, write the image list."""
    from lsdr.survey.discover import discover_images, write_image_list

    date_min, date_max = unit.option("date_min"), unit.option("date_max")
    found = discover_images(
        layout,
        cameras=unit.option("cameras"),
        date_min=date.fromisoformat(date_min) if date_min else None,
        date_max=date.fromisoformat(date_max) if date_max else None,
    )
    path = write_image_list(layout, found)
    return UnitOutput(
        (path,),
        {"kept": len(found.images), "dropped": [list(d) for d in found.dropped]},
    )


# -- zeropoints ---------------------------------------------------------------------------------
def plan_zeropoints(
    layout: ReleaseLayout, images: Sequence[str], *, run_calibs: bool = True, threads: int = 1
) -> list[Unit]:
    """One unit per image: inputs its ooi/ood/oow files and the reference catalogue."""
    refs = _paths(layout.gaia_chunks())
    units = []
    for image in images:
        inputs = (
            str(layout.image(image)),
            str(layout.image_companion(image, "ood")),
            str(layout.image_companion(image, "oow")),
            *refs,
        )
        units.append(
            Unit("zeropoints", image, inputs, (("run_calibs", run_calibs),), threads=threads)
        )
    return units


def zeropoints_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Zeropoints, PSF and sky of every CCD of one image, by the unit's engine."""
    options = ZeropointOptions(
        run_calibs=bool(unit.option("run_calibs", True)), threads=unit.threads
    )
    return unit_engine(unit).zeropoints(layout, unit.key, options)


# -- merge ------------------------------------------------------------------------------------
def plan_merge_calibs(layout: ReleaseLayout, images: Sequence[str]) -> list[Unit]:
    """One unit per exposure: inputs its image (headers read) and its per-CCD PsfEx and sky files.

    Their names come from the image's CCD list; an image that cannot be read (truncated since
    its zeropoints ran) gives a unit failed in planning (science, naming the file), not an error
    of the whole phase.  Images whose zeropoints failed are not given here at all.
    """
    from lsdr.survey.calibs import expected_calib_inputs

    units = []
    for image in images:
        try:
            inputs = (str(layout.image(image)), *_paths(expected_calib_inputs(layout, image)))
        except READ_ERRORS as err:
            bad = Unit("merge-calibs", image, (str(layout.image(image)),))
            units.append(bad.unplannable(as_input_error(layout.image(image), err)))
            continue
        units.append(Unit("merge-calibs", image, inputs))
    return units


def merge_calibs_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Stack one exposure's per-CCD calibs into its merged PsfEx and sky files."""
    return unit_engine(unit).merge_calibs(layout, unit.key)


def plan_merge_tables(
    layout: ReleaseLayout, images: Sequence[str], *, cut: bool = True, cut_expnum: bool = True
) -> list[Unit]:
    """One unit: every image's ``-annotated.fits`` that exists (missing ones are reported).

    ``images``: the images to merge, without those whose zeropoints or merged calibs failed
    (the flow leaves them out, whatever old table they left behind).
    """
    tables = [layout.zpt_annotated(i) for i in images]
    present = [p for p in tables if p.exists()]
    options = (
        ("cut", cut),
        ("cut_expnum", cut_expnum),
        # A synthetic survey (it has a truth table) holds partial exposures of binned pixels:
        # the cuts then count present CCDs and scale per-pixel thresholds (see CutOptions).
        ("synthetic", layout.truth_ccds.exists()),
        ("missing", sorted(str(p) for p in tables if not p.exists())),
    )
    return [Unit("merge", "survey-ccds", _paths(present), options)]


def merge_tables_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """The survey-ccds and ccds-annotated tables per camera and band, with ccd_cuts."""
    from lsdr.survey.ccdcuts import CutOptions

    synthetic = bool(unit.option("synthetic", False))
    options = MergeTablesOptions(
        cut=bool(unit.option("cut", True)),
        cut_expnum=bool(unit.option("cut_expnum", True)),
        cuts=CutOptions(present_ccds_only=synthetic, binned_pixels=synthetic),
    )
    merged = unit_engine(unit).merge_ccd_tables(layout, [Path(p) for p in unit.inputs], options)
    missing = unit.option("missing", [])
    return replace(merged, summary={**merged.summary, "missing_tables": missing})


# -- kd-tree, bricks, depth cut ----------------------------------------------------------------
def plan_kdtree(layout: ReleaseLayout) -> list[Unit]:
    """One unit: the unified kd-tree file over every survey-ccds table."""
    return [Unit("kdtree", "survey-ccds-kd", _paths(layout.survey_ccds_tables()))]


def kdtree_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Write ``survey-ccds-<dr>.kd.fits`` from the merged tables."""
    return unit_engine(unit).ccds_kdtree(layout)


def plan_bricks(layout: ReleaseLayout, region: RaDecBox | None) -> list[Unit]:
    """One unit: the brick list of the region, from the surviving CCDs."""
    box = None if region is None else [region.ra_min, region.ra_max, region.dec_min, region.dec_max]
    return [Unit("bricks", "brick-list", _paths(layout.survey_ccds_tables()), (("region", box),))]


def bricks_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Bricks touched by CCDs with ccd_cuts == 0, inside the region; a clean list."""
    from lsdr.survey.bricklist import bricks_for_ccds, write_brick_list
    from lsdr.survey.ccdtables import read_survey_ccds

    box = unit.option("region")
    region = RaDecBox(*box) if box else None
    bricks = bricks_for_ccds(read_survey_ccds(layout, kept_only=True), region)
    path = write_brick_list(layout, bricks)
    return UnitOutput((path,), {"bricks": len(bricks)})


def plan_depthcut(layout: ReleaseLayout) -> list[Unit]:
    """One unit: the depth cut over the brick list's bricks."""
    inputs = (*_paths(layout.survey_ccds_tables()), str(layout.brick_list))
    return [Unit("depthcut", "survey-ccds-depthcut", inputs)]


def depthcut_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Per brick, the CCDs needed to reach the target depth; the depth-cut table and kd-tree."""
    from lsdr.survey.bricklist import read_brick_list

    return unit_engine(unit).depth_cut(layout, read_brick_list(layout))
