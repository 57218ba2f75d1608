"""Phase ``summary``: ``survey-bricks-<dr>.fits.gz`` in RA-degree chunks, merged, with plots."""

from __future__ import annotations

from typing import Any

from prefect import flow

from lsdr.flows.runner import combined_summary, release_bricks, run_then_merge, settings_for
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.postprocess import (
    plan_summary,
    plan_summary_merge,
    summary_merge_unit,
    summary_unit,
)


@flow(name="summary")
def summary(
    release_dir: str,
    bricks: list[str] | None = None,
    bands: list[str] | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Summarise the bricks per RA degree in parallel, then merge the chunks and plot."""
    s = settings_for(release_dir, settings)
    layout = ReleaseLayout(s.release_dir)
    names, left_out = release_bricks(s, bricks, "summary")
    reports = run_then_merge(
        ("summary", summary_unit, plan_summary(layout, names, bands or ["g", "r", "z"])),
        ("summary-merge", summary_merge_unit, lambda parts: plan_summary_merge(layout, parts)),
        s,
    )
    return combined_summary(
        "summary",
        reports,
        left_out=left_out,
        left_out_what="brick",
        table=str(layout.brick_summary),
    )
