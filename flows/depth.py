"""Phase ``depth``: the release's depth histogram from the coadd depth maps."""

from __future__ import annotations

from typing import Any

from prefect import flow

from lsdr.flows.planning import release_bricks
from lsdr.flows.report import DepthResult, combined_summary
from lsdr.flows.runner import run_then_merge
from lsdr.flows.settings import settings_for
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import DepthOptions
from lsdr.tasks.depth import depth_merge_unit, depth_unit, plan_depth, plan_depth_merge


@flow(name="depth")
def depth(
    release_dir: str,
    options: DepthOptions | None = None,
    settings: dict[str, Any] | None = None,
) -> DepthResult:
    """Per brick, histogram its primary pixels' depths; then sum into ``<dr>-depth.fits``."""
    o = options or DepthOptions()
    s = settings_for(release_dir, settings)
    layout = ReleaseLayout(s.release_dir)
    names, left_out = release_bricks(s, o.bricks, "depth")
    reports = run_then_merge(
        ("depth", depth_unit, plan_depth(layout, names, o.bands)),
        ("depth-merge", depth_merge_unit, lambda parts: plan_depth_merge(layout, parts)),
        s,
        force=o.force,
    )
    return combined_summary(
        "depth",
        reports,
        result=DepthResult,
        left_out=left_out,
        left_out_what="brick",
        histogram=str(layout.depth_histogram),
    )
