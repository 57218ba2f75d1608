"""The ``zeropoints`` phase's units: one image each, through the unit's engine.

A planner (settings and options → units with their input files, so a changed input reprocesses
exactly its units) and a unit function (module level, so Dask pickles it by reference) that
returns the files it wrote.
"""

from __future__ import annotations

from collections.abc import Sequence

from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.engines.base import ZeropointOptions
from lsdr.tasks.unit import Unit, UnitOutput, path_strings, unit_engine


def plan_zeropoints(
    layout: ReleaseLayout, images: Sequence[str], *, run_calibs: bool, threads: int = 1
) -> list[Unit]:
    """One unit per image: inputs its ooi/ood/oow files and the reference catalogue."""
    refs = path_strings(layout.gaia_chunks())
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
    options = ZeropointOptions(run_calibs=bool(unit.option("run_calibs")), threads=unit.threads)
    return unit_engine(unit).zeropoints(layout, unit.key, options)
