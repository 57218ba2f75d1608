"""Phase ``brightneighbors``: bright stars and large blobs of neighbouring bricks in maskbits."""

from __future__ import annotations

from typing import Any

from prefect import flow

from lsdr.flows.planning import release_bricks
from lsdr.flows.report import BrightneighborsResult, phase_summary
from lsdr.flows.runner import run_units
from lsdr.flows.settings import settings_for
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import BrightneighborsOptions
from lsdr.tasks.brightneighbors import brightneighbors_unit, plan_brightneighbors


@flow(name="brightneighbors")
def brightneighbors(
    release_dir: str,
    options: BrightneighborsOptions | None = None,
    settings: dict[str, Any] | None = None,
) -> BrightneighborsResult:
    """Update each brick's maskbits image and catalogue from its neighbours (originals kept)."""
    o = options or BrightneighborsOptions()
    s = settings_for(release_dir, settings)
    names, left_out = release_bricks(s, o.bricks, "brightneighbors")
    units = plan_brightneighbors(ReleaseLayout(s.release_dir), names)
    report = run_units("brightneighbors", brightneighbors_unit, units, s, force=o.force)
    changed = sum(int(r.summary.get("pixels_changed", 0)) for r in report.results)
    return phase_summary(
        report,
        result=BrightneighborsResult,
        left_out=left_out,
        left_out_what="brick",
        pixels_changed=changed,
    )
