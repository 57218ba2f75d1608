"""Phase ``kdtree``: the unified ``survey-ccds-<dr>.kd.fits`` index over the CCD tables."""

from __future__ import annotations

from typing import Any

from prefect import flow

from lsdr.flows.report import PhaseResult, phase_summary
from lsdr.flows.runner import run_units
from lsdr.flows.settings import settings_for
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import KdtreeOptions
from lsdr.tasks.kdtree import kdtree_unit, plan_kdtree


@flow(name="kdtree")
def kdtree(
    release_dir: str,
    options: KdtreeOptions | None = None,
    settings: dict[str, Any] | None = None,
) -> PhaseResult:
    """Write the kd-tree CCD file (the ``.fits.gz`` tables stay as legacypipe's fallback).

    ``options`` has no fields yet: every phase flow takes its model, so that chains and
    deployments call each the same way.
    """
    s = settings_for(release_dir, settings)
    report = run_units("kdtree", kdtree_unit, plan_kdtree(ReleaseLayout(s.release_dir)), s)
    return phase_summary(report)
