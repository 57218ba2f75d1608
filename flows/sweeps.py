"""Phase ``sweeps``: the primary objects' sweep columns, one file per 5°×5° sky box."""

from __future__ import annotations

from typing import Any

from prefect import flow

from lsdr.flows.planning import release_bricks
from lsdr.flows.report import SweepsResult, phase_summary
from lsdr.flows.runner import run_units
from lsdr.flows.settings import settings_for
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import SweepsOptions
from lsdr.tasks.sweeps import plan_sweeps, sweeps_unit


@flow(name="sweeps")
def sweeps(
    release_dir: str,
    options: SweepsOptions | None = None,
    settings: dict[str, Any] | None = None,
) -> SweepsResult:
    """Write one sweep file per sky box holding any of the bricks."""
    o = options or SweepsOptions()
    version = o.version
    s = settings_for(release_dir, settings)
    layout = ReleaseLayout(s.release_dir)
    names, left_out = release_bricks(s, o.bricks, "sweeps")
    report = run_units("sweeps", sweeps_unit, plan_sweeps(layout, names, version), s)
    return phase_summary(
        report,
        result=SweepsResult,
        left_out=left_out,
        left_out_what="brick",
        sweep_dir=str(layout.sweep_dir(version)),
    )
