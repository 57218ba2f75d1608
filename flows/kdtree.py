"""Phase ``kdtree``: the unified ``survey-ccds-<dr>.kd.fits`` index over the CCD tables."""

from __future__ import annotations

from typing import Any

from prefect import flow

from lsdr.flows.runner import phase_summary, run_units, settings_for
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.pretractor import kdtree_unit, plan_kdtree


@flow(name="kdtree")
def kdtree(release_dir: str, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the kd-tree CCD file (the ``.fits.gz`` tables stay as legacypipe's fallback)."""
    s = settings_for(release_dir, settings)
    report = run_units("kdtree", kdtree_unit, plan_kdtree(ReleaseLayout(s.release_dir)), s)
    return phase_summary(report)
