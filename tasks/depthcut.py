"""The ``depthcut`` phase's unit: the CCDs each brick needs, through the unit's engine.

A planner (settings and options → units with their input files, so a changed input reprocesses
exactly its units) and a unit function (module level, so Dask pickles it by reference) that
returns the files it wrote.
"""

from __future__ import annotations

from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.unit import Unit, UnitOutput, path_strings, unit_engine


def plan_depthcut(layout: ReleaseLayout) -> list[Unit]:
    """One unit: the depth cut over the brick list's bricks."""
    inputs = (*path_strings(layout.survey_ccds_tables()), str(layout.brick_list))
    return [Unit("depthcut", "survey-ccds-depthcut", inputs)]


def depthcut_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Per brick, the CCDs needed to reach the target depth; the depth-cut table and kd-tree."""
    from lsdr.survey.pretractor.bricklist import read_brick_list

    return unit_engine(unit).depth_cut(layout, read_brick_list(layout))
