"""``reprocess-region``: a region of a release redone on request (the API, the UI, the CLI).

The request (:class:`~lsdr.survey.core.reprocess_request.ReprocessRequest`) is checked by its
model when the run's parameters are validated, and against the release here before any unit
starts: its region becomes exactly the release's bricks in it, the bricks' tractor options are
the ones the release made them with (their sidecars), the settings (engine, cluster profile)
are read.  Then the requested phases run in chain order on one Dask cluster:

- ``tractor`` on the region's bricks only;
- the post-tractor phases over the **whole release**, not a ``bricks`` selection: a selection
  would rewrite the release-wide products (the depth histogram, ``survey-bricks``, a sweep box,
  the external matches, the release checksum files) from the region's bricks alone.  Their
  units whose inputs did not change are found done, so the work follows the region: the
  region's bricks' own units, the chunk, box and merge units that read them, and the bright-
  neighbour units of bricks next to them whose inputs changed.

``force`` reruns the region's bricks' own units (one per brick: tractor, brightneighbors,
depth, package's verification) even when done; the units reading several bricks rerun when
what they read changed.  Two runs of one release whose regions overlap never run one unit at
once (the unit locks of ``tasks/locks.py``); the second finds a unit the first finished done,
unless it is forced.  A run holds the release's lock shared (``infra/release_lock.py``):
requests run side by side, never beside a whole-release run.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from typing import Any

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field

from lsdr.flows.phases import run_phase
from lsdr.flows.report import PhaseResult
from lsdr.flows.settings import settings_for, writing_release
from lsdr.infra.cluster import dask_cluster
from lsdr.infra.release_lock import LockMode
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import TractorOptions
from lsdr.survey.core.reprocess_request import ReprocessRequest
from lsdr.tasks.reprocess import plan_reprocess

log = logging.getLogger("lsdr.flows")


class ReprocessResult(BaseModel):
    """``reprocess-region``: the region's bricks, how they were asked for, each phase's result."""

    model_config = ConfigDict(extra="forbid")

    region: str
    bricks: list[str]
    forced: bool = False
    priority: int = 0
    tractor: dict[str, Any] = Field(default_factory=dict)
    """The tractor options the bricks were run with (the release's own)."""
    phases: list[PhaseResult] = Field(default_factory=list)


@flow(name="reprocess-region")
def reprocess_region(
    release_dir: str,
    request: ReprocessRequest,
    settings: dict[str, Any] | None = None,
    dask_address: str | None = None,
) -> ReprocessResult:
    """Reprocess the request's region of the release: its bricks, and what reads them.

    Everything is checked before a unit starts (a refused request fails the run with one
    line); ``dask_address`` runs the phases on that cluster instead of one of the run's own.
    """
    s = settings_for(release_dir, {**(settings or {}), **request.setting_overrides()})
    with writing_release(s, LockMode.SHARED):
        layout = ReleaseLayout(s.release_dir)
        plan = plan_reprocess(layout, request, s)
        tractor = next((o for n, o in plan.phases if n == "tractor"), None)
        grid_fields = set(TractorOptions.model_fields) - {"bricks", "force"}
        grid = tractor.model_dump(include=grid_fields) if tractor is not None else {}
        log.info(
            "reprocess-region: %s: %d bricks of the release (%s); phases %s%s; priority %d",
            request.describe(),
            len(plan.bricks),
            ", ".join(plan.bricks[:20]) + (" …" if len(plan.bricks) > 20 else ""),
            ", ".join(request.phases),
            "; forced" if request.force else "",
            request.priority,
        )
        results: list[PhaseResult] = []
        with ExitStack() as stack:
            address = dask_address or stack.enter_context(dask_cluster(s))
            for name, options in plan.phases:
                results.append(run_phase(name, s, address, options))
        result = ReprocessResult(
            region=request.describe(),
            bricks=plan.bricks,
            forced=request.force,
            priority=request.priority,
            tractor=grid,
            phases=results,
        )
        _summary_artifact(result)
        return result


def summary_markdown(result: ReprocessResult) -> str:
    """The run's summary: the region, its bricks, and units per phase."""
    lines = [
        f"# Reprocess {result.region}",
        "",
        f"{len(result.bricks)} brick{'' if len(result.bricks) == 1 else 's'}: "
        + ", ".join(result.bricks),
        "",
        f"force: {'yes' if result.forced else 'no'}; priority {result.priority} (recorded)",
        "",
        "| phase | done | already done | failed |",
        "|---|---|---|---|",
    ]
    for r in result.phases:
        c = r.counts
        lines.append(f"| {r.phase} | {c.done} | {c.cached} | {c.failed} |")
    failed = [(r.phase, f) for r in result.phases for f in r.failed]
    if failed:
        lines += ["", "## Failed", ""]
        lines += [f"- {phase} {key} [{cls}]: {msg}" for phase, (key, cls, msg) in failed]
    return "\n".join(lines) + "\n"


def _summary_artifact(result: ReprocessResult) -> None:
    """The summary as the flow run's markdown artifact (a view: never fails the run)."""
    try:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(
            summary_markdown(result), key="reprocess-summary", description="reprocess summary"
        )
    except Exception as err:
        log.warning("could not create the reprocess summary artifact: %s", err)
