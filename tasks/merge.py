"""The ``merge`` phase's units: ``merge-calibs`` per exposure, then the CCD tables.

A planner (settings and options → units with their input files, so a changed input reprocesses
exactly its units) and a unit function (module level, so Dask pickles it by reference) that
returns the files it wrote. An image that cannot be read gives a unit failed in planning, not an
error of the phase.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.engines.base import MergeTablesOptions
from lsdr.tasks.unit import Unit, UnitOutput, path_strings, unit_engine

READ_ERRORS = (InputFileError, OSError, ValueError, RuntimeError)
"""What reading a bad FITS file raises, through lsdr's readers (the first) or fitsio's."""


def as_input_error(path: Path, err: Exception) -> InputFileError:
    """``err`` as an :class:`InputFileError` naming ``path`` (unchanged if it already is one)."""
    from lsdr.survey.core.fitsread import fits_failure

    return err if isinstance(err, InputFileError) else fits_failure(path, err)


def plan_merge_calibs(layout: ReleaseLayout, images: Sequence[str]) -> list[Unit]:
    """One unit per exposure: inputs its image (headers read) and its per-CCD PsfEx and sky files.

    Their names come from the image's CCD list; an image that cannot be read (truncated since
    its zeropoints ran) gives a unit failed in planning (science, naming the file), not an error
    of the whole phase.  Images whose zeropoints failed are not given here at all.
    """
    from lsdr.survey.pretractor.calibs import expected_calib_inputs

    units = []
    for image in images:
        try:
            inputs = (str(layout.image(image)), *path_strings(expected_calib_inputs(layout, image)))
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
    layout: ReleaseLayout, images: Sequence[str], *, cut: bool, cut_expnum: bool
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
    return [Unit("merge", "survey-ccds", path_strings(present), options)]


def merge_tables_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """The survey-ccds and ccds-annotated tables per camera and band, with ccd_cuts."""
    from lsdr.survey.pretractor.ccdcuts import CutOptions

    synthetic = bool(unit.option("synthetic", False))
    options = MergeTablesOptions(
        cut=bool(unit.option("cut")),
        cut_expnum=bool(unit.option("cut_expnum")),
        cuts=CutOptions(present_ccds_only=synthetic, binned_pixels=synthetic),
    )
    merged = unit_engine(unit).merge_ccd_tables(layout, [Path(p) for p in unit.inputs], options)
    missing = unit.option("missing", [])
    return replace(merged, summary={**merged.summary, "missing_tables": missing})
