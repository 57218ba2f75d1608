"""The ``sweeps`` phase's units: one sweep file per sky box, through the unit's engine.

A planner (settings and options → units with their input files, so a changed input reprocesses
exactly its units) and a unit function (module level, so Dask pickles it by reference) that
returns the files it wrote.
"""

from __future__ import annotations

from collections.abc import Sequence

from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.unit import Unit, UnitOutput, unit_engine


def plan_sweeps(layout: ReleaseLayout, bricks: Sequence[str], version: str) -> list[Unit]:
    """One unit per sweep box: the catalogues of the bricks overlapping it."""
    from lsdr.survey.posttractor.sweeps import sweep_boxes

    units = []
    for box in sweep_boxes(layout, bricks):
        path = layout.sweep(version, box.ra1, box.dec1, box.ra2, box.dec2)
        inputs = tuple(str(layout.tractor(b)) for b in box.bricks)
        options = (
            ("version", version),
            ("box", [box.ra1, box.dec1, box.ra2, box.dec2]),
            ("bricks", list(box.bricks)),
        )
        units.append(Unit("sweeps", path.stem, inputs, options))
    return units


def sweeps_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Write one sweep file: the box's primary objects, sweep columns."""
    from lsdr.survey.posttractor.sweeps import SweepBox

    ra1, dec1, ra2, dec2 = unit.option("box")
    box = SweepBox(ra1, dec1, ra2, dec2, tuple(unit.option("bricks", [])))
    return unit_engine(unit).sweep(layout, box, str(unit.option("version")))
