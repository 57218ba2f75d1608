"""Phase ``depthcut`` (optional, off by default as for DR6): the CCDs each brick needs."""

from __future__ import annotations

from typing import Any

from prefect import flow

from lsdr.flows.report import PhaseResult, phase_summary
from lsdr.flows.runner import run_units
from lsdr.flows.settings import settings_for
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import DepthcutOptions
from lsdr.tasks.depthcut import depthcut_unit, plan_depthcut


@flow(name="depthcut")
def depthcut(
    release_dir: str,
    options: DepthcutOptions | None = None,
    settings: dict[str, Any] | None = None,
) -> PhaseResult:
    """Write the depth-cut CCD table and its kd-tree for the brick list.

    ``options`` has no fields yet: every phase flow takes its model, so that chains and
    deployments call each the same way.
    """
    s = settings_for(release_dir, settings)
    report = run_units("depthcut", depthcut_unit, plan_depthcut(ReleaseLayout(s.release_dir)), s)
    return phase_summary(report)
