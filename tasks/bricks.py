"""The ``bricks`` phase's unit: the brick list of the region, from the surviving CCDs.

A planner (settings and options → units with their input files, so a changed input reprocesses
exactly its units) and a unit function (module level, so Dask pickles it by reference) that
returns the files it wrote. The brick list plans what runs: lsdr's own, whatever the engine.
"""

from __future__ import annotations

from lsdr.survey.core.bricks import RaDecBox
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.unit import Unit, UnitOutput, path_strings


def plan_bricks(layout: ReleaseLayout, region: RaDecBox | None) -> list[Unit]:
    """One unit: the brick list of the region, from the surviving CCDs."""
    box = None if region is None else [region.ra_min, region.ra_max, region.dec_min, region.dec_max]
    return [
        Unit("bricks", "brick-list", path_strings(layout.survey_ccds_tables()), (("region", box),))
    ]


def bricks_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Bricks touched by CCDs with ccd_cuts == 0, inside the region; a clean list."""
    from lsdr.survey.pretractor.bricklist import bricks_for_ccds, write_brick_list
    from lsdr.survey.pretractor.ccdtables import read_survey_ccds

    box = unit.option("region")
    region = RaDecBox(*box) if box else None
    bricks = bricks_for_ccds(read_survey_ccds(layout, kept_only=True), region)
    path = write_brick_list(layout, bricks)
    # The region is recorded with the list: the nightly increment keeps the release's region.
    return UnitOutput((path,), {"bricks": len(bricks), "region": box})
