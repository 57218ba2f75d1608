"""The ``discover`` phase's unit: scan ``images/`` for CP files, write the image list.

A planner (settings and options → units with their input files, so a changed input reprocesses
exactly its units) and a unit function (module level, so Dask pickles it by reference) that
returns the files it wrote. The image list plans what runs: lsdr's own, whatever the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.unit import Unit, UnitOutput, path_strings

CP_PATTERNS = ("c4d_*_oo[iwd]_*", "k4m_*_oo[iwd]_*", "ksb_*_oo[iwd]_*", "*_oki_*")
"""The CP files whose names and stamps decide what discovery finds."""


def plan_discover(
    layout: ReleaseLayout,
    *,
    cameras: Sequence[str] | None = None,
    date_min: date | None = None,
    date_max: date | None = None,
) -> list[Unit]:
    """One unit: scan ``images/``; it reads every CP file's primary header (its inputs).

    By header digest: a CP file whose pixels change, or that is copied back over itself,
    leaves the image list done; a new, removed or re-headered file reruns the scan.
    """
    files: list[Path] = []
    if layout.images_dir.exists():
        for pattern in CP_PATTERNS:
            files.extend(layout.images_dir.rglob(pattern))
    options = (
        ("cameras", sorted(cameras) if cameras else None),
        ("date_min", date_min.isoformat() if date_min else None),
        ("date_max", date_max.isoformat() if date_max else None),
    )
    return [Unit("discover", "images", (), options, headers=path_strings(sorted(set(files))))]


def discover_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Find the CP images, trim dates and duplicates, write the image list."""
    from lsdr.survey.pretractor.discover import discover_images, write_image_list

    date_min, date_max = unit.option("date_min"), unit.option("date_max")
    found = discover_images(
        layout,
        cameras=unit.option("cameras"),
        date_min=date.fromisoformat(date_min) if date_min else None,
        date_max=date.fromisoformat(date_max) if date_max else None,
    )
    path = write_image_list(layout, found)
    return UnitOutput(
        (path,),
        {"kept": len(found.images), "dropped": [list(d) for d in found.dropped]},
    )
