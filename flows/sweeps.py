"""Phase ``sweeps``: the primary objects' sweep columns, one file per 5°×5° sky box."""

from __future__ import annotations

from typing import Any

from prefect import flow

from lsdr.flows.runner import phase_summary, release_bricks, run_units, settings_for
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.postprocess import plan_sweeps, sweeps_unit

SWEEP_VERSION = "10.0"
"""The sweep directory name (``sweep/<version>/``), as DR10's ``sweep/10.0``."""


@flow(name="sweeps")
def sweeps(
    release_dir: str,
    bricks: list[str] | None = None,
    version: str = SWEEP_VERSION,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write one sweep file per sky box holding any of the bricks."""
    s = settings_for(release_dir, settings)
    layout = ReleaseLayout(s.release_dir)
    names, left_out = release_bricks(s, bricks, "sweeps")
    report = run_units("sweeps", sweeps_unit, plan_sweeps(layout, names, version), s)
    return phase_summary(
        report, left_out=left_out, left_out_what="brick", sweep_dir=str(layout.sweep_dir(version))
    )
