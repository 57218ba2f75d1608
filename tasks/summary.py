"""The ``summary`` phase's units: ``summary`` per RA-degree chunk, then ``summary-merge``.

A planner (settings and options → units with their input files, so a changed input reprocesses
exactly its units) and a unit function (module level, so Dask pickles it by reference) that
returns the files it wrote. The science is the unit's engine's (``survey/engines``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.unit import Unit, UnitOutput, UnitResult, unit_engine


def plan_summary(layout: ReleaseLayout, bricks: Sequence[str], bands: Sequence[str]) -> list[Unit]:
    """One unit per RA-degree chunk: its bricks' nexp and depth maps and catalogues."""
    from lsdr.survey.posttractor.bricksummary import summary_chunks

    units = []
    for key, members in sorted(summary_chunks(bricks).items()):
        files: list[Path] = []
        for brick in members:
            files.append(layout.tractor(brick))
            files.extend(
                layout.coadd(brick, kind, band)
                for kind in ("nexp", "depth", "galdepth")
                for band in bands
            )
        units.append(
            Unit("summary", key, tuple(str(p) for p in files), (("bricks", list(members)),))
        )
    return units


def summary_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """The partial brick summary of one RA-degree chunk."""
    return unit_engine(unit).summarize_chunk(layout, unit.key, list(unit.option("bricks", [])))


def plan_summary_merge(layout: ReleaseLayout, partials: Sequence[UnitResult]) -> list[Unit]:
    """One unit: ``survey-bricks-<dr>.fits.gz`` and the summary plots from the chunks."""
    files = tuple(sorted(o for r in partials for o in r.outputs))
    return [Unit("summary-merge", "survey-bricks", files)]


def summary_merge_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Merge the chunks; draw the sky maps."""
    return unit_engine(unit).merge_summary(layout, [Path(p) for p in unit.inputs])
