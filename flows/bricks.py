"""Phase ``bricks``: the release's brick list, from the CCDs that survived the cuts."""

from __future__ import annotations

from typing import Any

from prefect import flow

from lsdr.flows.runner import phase_summary, run_units, settings_for
from lsdr.survey.core.bricks import RaDecBox
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.pretractor import bricks_unit, plan_bricks


@flow(name="bricks")
def bricks(
    release_dir: str,
    region: list[float] | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the brick list: bricks of ``region`` (RA min, RA max, Dec min, Dec max) touched."""
    s = settings_for(release_dir, settings)
    box = RaDecBox(*region) if region else None
    report = run_units("bricks", bricks_unit, plan_bricks(ReleaseLayout(s.release_dir), box), s)
    return phase_summary(report, bricks=report.results[0].summary.get("bricks", 0))
