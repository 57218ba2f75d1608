"""Phase ``depth``: the release's depth histogram from the coadd depth maps."""

from __future__ import annotations

from typing import Any

from prefect import flow

from lsdr.flows.runner import combined_summary, release_bricks, run_then_merge, settings_for
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.postprocess import depth_merge_unit, depth_unit, plan_depth, plan_depth_merge


@flow(name="depth")
def depth(
    release_dir: str,
    bricks: list[str] | None = None,
    bands: list[str] | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Per brick, histogram its primary pixels' depths; then sum into ``<dr>-depth.fits``."""
    s = settings_for(release_dir, settings)
    layout = ReleaseLayout(s.release_dir)
    names, left_out = release_bricks(s, bricks, "depth")
    bands_ = bands or ["g", "r", "z"]
    reports = run_then_merge(
        ("depth", depth_unit, plan_depth(layout, names, bands_)),
        ("depth-merge", depth_merge_unit, lambda parts: plan_depth_merge(layout, parts)),
        s,
    )
    return combined_summary(
        "depth",
        reports,
        left_out=left_out,
        left_out_what="brick",
        histogram=str(layout.depth_histogram),
    )
