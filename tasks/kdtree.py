"""The ``kdtree`` phase's unit: the unified kd-tree CCD file, through the unit's engine.

A planner (settings and options → units with their input files, so a changed input reprocesses
exactly its units) and a unit function (module level, so Dask pickles it by reference) that
returns the files it wrote.
"""

from __future__ import annotations

from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.unit import Unit, UnitOutput, path_strings, unit_engine


def plan_kdtree(layout: ReleaseLayout) -> list[Unit]:
    """One unit: the unified kd-tree file over every survey-ccds table."""
    return [Unit("kdtree", "survey-ccds-kd", path_strings(layout.survey_ccds_tables()))]


def kdtree_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Write ``survey-ccds-<dr>.kd.fits`` from the merged tables."""
    return unit_engine(unit).ccds_kdtree(layout)
