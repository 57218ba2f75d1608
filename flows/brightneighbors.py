"""Phase ``brightneighbors``: bright stars and large blobs of neighbouring bricks in maskbits."""

from __future__ import annotations

from typing import Any

from prefect import flow

from lsdr.flows.runner import phase_summary, release_bricks, run_units, settings_for
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.postprocess import brightneighbors_unit, plan_brightneighbors


@flow(name="brightneighbors")
def brightneighbors(
    release_dir: str, bricks: list[str] | None = None, settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Update each brick's maskbits image and catalogue from its neighbours (originals kept)."""
    s = settings_for(release_dir, settings)
    names, left_out = release_bricks(s, bricks, "brightneighbors")
    units = plan_brightneighbors(ReleaseLayout(s.release_dir), names)
    report = run_units("brightneighbors", brightneighbors_unit, units, s)
    changed = sum(int(r.summary.get("pixels_changed", 0)) for r in report.results)
    return phase_summary(report, left_out=left_out, left_out_what="brick", pixels_changed=changed)
