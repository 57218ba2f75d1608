"""Phase ``publish``: copy the release to its destination with rsync."""

from __future__ import annotations

from typing import Any

from prefect import flow

from lsdr.flows.runner import combined_summary, phase_summary, run_units, settings_for
from lsdr.survey.layout import ReleaseLayout
from lsdr.tasks.postprocess import plan_publish, publish_unit


@flow(name="publish")
def publish(
    release_dir: str,
    destination: str,
    dry_run: bool = False,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """rsync the release (not ``images/`` links, not orchestration state) to ``destination``.

    A dry run lists what would be copied and records nothing.
    """
    from lsdr.survey.publish import publish as rsync_release

    s = settings_for(release_dir, settings)
    layout = ReleaseLayout(s.release_dir)
    if dry_run:
        result = rsync_release(layout, destination, dry_run=True)
        return combined_summary("publish", [], dry_run=True, would_copy=list(result.files[:50]))
    report = run_units("publish", publish_unit, plan_publish(layout, destination), s)
    return phase_summary(report, destination=destination)
