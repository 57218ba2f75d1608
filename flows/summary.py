"""Phase ``summary``: ``survey-bricks-<dr>.fits.gz`` in RA-degree chunks, merged, with plots."""

from __future__ import annotations

from typing import Any

from prefect import flow

from lsdr.flows.planning import release_bricks
from lsdr.flows.report import SummaryResult, combined_summary
from lsdr.flows.runner import run_then_merge
from lsdr.flows.settings import settings_for
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import SummaryOptions
from lsdr.tasks.summary import plan_summary, plan_summary_merge, summary_merge_unit, summary_unit


@flow(name="summary")
def summary(
    release_dir: str,
    options: SummaryOptions | None = None,
    settings: dict[str, Any] | None = None,
) -> SummaryResult:
    """Summarise the bricks per RA degree in parallel, then merge the chunks and plot."""
    o = options or SummaryOptions()
    s = settings_for(release_dir, settings)
    layout = ReleaseLayout(s.release_dir)
    names, left_out = release_bricks(s, o.bricks, "summary")
    reports = run_then_merge(
        ("summary", summary_unit, plan_summary(layout, names, o.bands)),
        ("summary-merge", summary_merge_unit, lambda parts: plan_summary_merge(layout, parts)),
        s,
    )
    return combined_summary(
        "summary",
        reports,
        result=SummaryResult,
        left_out=left_out,
        left_out_what="brick",
        table=str(layout.brick_summary),
    )
