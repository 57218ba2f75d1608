"""The ``brightneighbors`` phase's units: one brick each, through the unit's engine.

A planner (settings and options → units with their input files, so a changed input reprocesses
exactly its units) and a unit function (module level, so Dask pickles it by reference) that
returns the files it wrote. Each unit's inputs are the files it reads, so a rerun finds it done
until one of them changes.
"""

from __future__ import annotations

from collections.abc import Sequence

from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.sidecars import amend_outputs
from lsdr.tasks.unit import Unit, UnitOutput, unit_engine


def plan_brightneighbors(layout: ReleaseLayout, bricks: Sequence[str]) -> list[Unit]:
    """One unit per brick; it reads the blob and reference maps of the brick and its neighbours.

    Those metrics files change only when runbrick reruns a brick, unlike the maskbits and the
    catalogue, which this step rewrites itself.  Neighbours: the bricks sharing an edge or a
    corner (``survey.brightneighbors.grid_neighbours``).
    """
    from lsdr.survey.posttractor.brightneighbors import grid_neighbours

    units = []
    for brick in bricks:
        around = [brick, *grid_neighbours(brick)]
        inputs = tuple(
            str(layout.metrics(b, kind)) for b in around for kind in ("blobs", "reference")
        )
        units.append(Unit("brightneighbors", brick, inputs))
    return units


def brightneighbors_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Update the brick's maskbits from its neighbours' bright stars; keep the tractor unit done."""
    output = unit_engine(unit).bright_neighbours(layout, unit.key)
    amend_outputs(layout, "tractor", unit.key, output.paths)
    return output
