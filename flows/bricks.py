"""Phase ``bricks``: the release's brick list, from the CCDs that survived the cuts."""

from __future__ import annotations

from typing import Any

from prefect import flow

from lsdr.flows.report import BricksResult, phase_summary
from lsdr.flows.runner import run_units
from lsdr.flows.settings import settings_for
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import BricksOptions
from lsdr.tasks.bricks import bricks_unit, plan_bricks


@flow(name="bricks")
def bricks(
    release_dir: str,
    options: BricksOptions | None = None,
    settings: dict[str, Any] | None = None,
) -> BricksResult:
    """Write the brick list: the bricks of the region (default all) the CCDs touch."""
    s = settings_for(release_dir, settings)
    box = (options or BricksOptions()).box()
    report = run_units("bricks", bricks_unit, plan_bricks(ReleaseLayout(s.release_dir), box), s)
    return phase_summary(
        report, result=BricksResult, bricks=report.results[0].summary.get("bricks", 0)
    )
