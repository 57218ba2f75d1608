"""Phase ``depthcut`` (optional, off by default as for DR6): the CCDs each brick needs."""

from __future__ import annotations

from typing import Any

from prefect import flow

from lsdr.flows.runner import phase_summary, run_units, settings_for
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.pretractor import depthcut_unit, plan_depthcut


@flow(name="depthcut")
def depthcut(release_dir: str, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the depth-cut CCD table and its kd-tree for the brick list."""
    s = settings_for(release_dir, settings)
    report = run_units("depthcut", depthcut_unit, plan_depthcut(ReleaseLayout(s.release_dir)), s)
    return phase_summary(report)
