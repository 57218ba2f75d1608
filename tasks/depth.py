"""The ``depth`` phase's units: ``depth`` per brick, then ``depth-merge``.

A planner (settings and options → units with their input files, so a changed input reprocesses
exactly its units) and a unit function (module level, so Dask pickles it by reference) that
returns the files it wrote. The science is the unit's engine's (``survey/engines``).
"""

from __future__ import annotations

from collections.abc import Sequence

from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.unit import Unit, UnitOutput, UnitResult, unit_engine


def plan_depth(layout: ReleaseLayout, bricks: Sequence[str], bands: Sequence[str]) -> list[Unit]:
    """One unit per brick: its PSF and galaxy depth maps and its maskbits (primary pixels)."""
    units = []
    for brick in bricks:
        files = [
            layout.coadd(brick, kind, band) for kind in ("depth", "galdepth") for band in bands
        ]
        files.append(layout.coadd_maskbits(brick))
        units.append(Unit("depth", brick, tuple(str(p) for p in files)))
    return units


def depth_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Histogram one brick's depth maps over its primary pixels."""
    return unit_engine(unit).brick_depth(layout, unit.key)


def plan_depth_merge(layout: ReleaseLayout, partials: Sequence[UnitResult]) -> list[Unit]:
    """One unit: the release's depth histogram from the finished bricks' counts."""
    files = tuple(sorted(o for r in partials for o in r.outputs))
    bricks = sorted(r.key for r in partials)
    return [Unit("depth-merge", "depth-histogram", files, (("bricks", bricks),))]


def depth_merge_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Sum the per-brick counts into ``<dr>-depth.fits`` and its plot."""
    return unit_engine(unit).merge_depth(layout, list(unit.option("bricks", [])))
