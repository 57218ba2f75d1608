"""The ``external`` phase's units: one external catalogue each, through the unit's engine.

A planner (settings and options → units with their input files, so a changed input reprocesses
exactly its units) and a unit function (module level, so Dask pickles it by reference) that
returns the files it wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.engines.base import MatchOptions
from lsdr.tasks.unit import Unit, UnitOutput, unit_engine


def plan_external(
    layout: ReleaseLayout,
    bricks: Sequence[str],
    catalogues: Sequence[Any],
    radius_arcsec: float,
) -> list[Unit]:
    """One unit per external catalogue: the catalogue file and every brick's catalogue."""
    cats = tuple(str(layout.tractor(b)) for b in bricks)
    units = []
    for cat in catalogues:
        options = (
            ("catalogue", _catalogue_doc(cat)),
            ("radius_arcsec", radius_arcsec),
            ("bricks", list(bricks)),
        )
        units.append(Unit("external", cat.name, (str(cat.path), *cats), options))
    return units


def _catalogue_doc(cat: Any) -> dict[str, Any]:
    from dataclasses import asdict

    doc = asdict(cat)
    return {
        k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
        for k, v in doc.items()
    }


def external_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Match one external catalogue to the release's primary objects."""
    from lsdr.survey.posttractor.external import catalogue_from_dict

    catalogue = catalogue_from_dict(unit.option("catalogue"))
    options = MatchOptions(
        bricks=tuple(unit.option("bricks", [])),
        radius_arcsec=float(unit.option("radius_arcsec")),
    )
    return unit_engine(unit).match_external(layout, catalogue, options)
