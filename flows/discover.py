"""Phase ``discover``: find the CP images, trim dates and duplicates, write the image list."""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow

from lsdr.flows.report import DiscoverResult, phase_summary
from lsdr.flows.runner import run_units
from lsdr.flows.settings import settings_for
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import DiscoverOptions
from lsdr.tasks.discover import discover_unit, plan_discover

log = logging.getLogger("lsdr.flows")


@flow(name="discover")
def discover(
    release_dir: str,
    options: DiscoverOptions | None = None,
    settings: dict[str, Any] | None = None,
) -> DiscoverResult:
    """Write ``image-list.txt`` (paths relative to ``images/``) and say what was dropped."""
    o = options or DiscoverOptions()
    s = settings_for(release_dir, settings)
    layout = ReleaseLayout(s.release_dir)
    units = plan_discover(layout, cameras=o.cameras, date_min=o.date_min, date_max=o.date_max)
    report = run_units("discover", discover_unit, units, s)
    summary = report.results[0].summary if report.ok else {}
    dropped = summary.get("dropped", [])
    for relpath, reason in dropped:
        log.warning("discover: dropped %s: %s", relpath, reason)
    if dropped:
        _dropped_artifact(dropped)
    return phase_summary(
        report, result=DiscoverResult, kept=summary.get("kept", 0), dropped=dropped
    )


def _dropped_artifact(dropped: list[list[str]]) -> None:
    try:
        from prefect.artifacts import create_table_artifact

        create_table_artifact(
            [{"image": d[0], "reason": d[1]} for d in dropped],
            key="discover-dropped",
            description="Images discovery dropped, and why",
        )
    except Exception as err:
        log.warning("could not create the dropped-images artifact: %s", err)
