"""``pretractor``: the cookbook's pre-tractor computations, chained, on one Dask cluster.

discover → zeropoints → merge → kdtree → bricks → (depthcut).  A phase with failed units does
not stop the chain when later phases can use what succeeded (a bad image is left out of the
CCD tables and reported); a phase that produced nothing the next one needs stops it.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from datetime import date
from typing import Any

from prefect import flow

from lsdr.flows.bricks import bricks
from lsdr.flows.bricksummary import bricksummary
from lsdr.flows.brightneighbors import brightneighbors
from lsdr.flows.depthcut import depthcut
from lsdr.flows.depthhist import depthhist
from lsdr.flows.discover import discover
from lsdr.flows.external import external
from lsdr.flows.kdtree import kdtree
from lsdr.flows.merge import merge
from lsdr.flows.package import package
from lsdr.flows.publish import publish
from lsdr.flows.runner import settings_for
from lsdr.flows.sweeps import sweeps
from lsdr.flows.tractor import tractor
from lsdr.flows.zeropoints import zeropoints
from lsdr.infra.cluster import dask_cluster, task_runner
from lsdr.infra.settings import Settings

log = logging.getLogger("lsdr.flows")

PHASE_FLOWS: dict[str, Any] = {
    "discover": discover,
    "zeropoints": zeropoints,
    "merge": merge,
    "kdtree": kdtree,
    "bricks": bricks,
    "depthcut": depthcut,
    "tractor": tractor,
    "brightneighbors": brightneighbors,
    "depth": depthhist,
    "summary": bricksummary,
    "sweeps": sweeps,
    "external": external,
    "package": package,
    "publish": publish,
}
"""The phase flows by name, in chain order (``pretractor`` runs discover … depthcut)."""

STOPPING = {"discover", "merge", "kdtree"}
"""Phases whose failure leaves nothing for the next phase to use."""


def run_phase(
    name: str, settings: Settings, address: str | None = None, **params: Any
) -> dict[str, Any]:
    """Run one phase flow on the cluster at ``address`` (or a cluster of its own).

    Inside a parent flow (pretractor, release) the phase runs without its own heartbeat
    thread: the parent's heartbeats already show the process alive, and stopping a
    heartbeat thread costs up to a second per sub-flow (it sleeps in 1 s steps), which was
    most of a no-op rerun of the demo.
    """
    from prefect.context import FlowRunContext
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    phase_flow = PHASE_FLOWS[name].with_options(task_runner=task_runner(settings, address))
    updates = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None} if FlowRunContext.get() else {}
    with temporary_settings(updates=updates):
        result: dict[str, Any] = phase_flow(
            release_dir=str(settings.release_dir), settings=_overrides(settings), **params
        )
    return result


def _overrides(settings: Settings) -> dict[str, Any]:
    """The settings as overrides for a sub-flow (so it sees exactly what the parent saw)."""
    return settings.model_dump(mode="json", exclude={"release_dir"})


@flow(name="pretractor")
def pretractor(
    release_dir: str,
    region: list[float] | None = None,
    cameras: list[str] | None = None,
    date_min: date | None = None,
    date_max: date | None = None,
    run_calibs: bool = True,
    cut: bool = True,
    cut_expnum: bool = True,
    depth_cut: bool = False,
    settings: dict[str, Any] | None = None,
    dask_address: str | None = None,
) -> list[dict[str, Any]]:
    """Run the pre-tractor phases in order; return each phase's summary."""
    s = settings_for(release_dir, settings)
    steps: list[tuple[str, dict[str, Any]]] = [
        ("discover", {"cameras": cameras, "date_min": date_min, "date_max": date_max}),
        ("zeropoints", {"run_calibs": run_calibs}),
        ("merge", {"cut": cut, "cut_expnum": cut_expnum}),
        ("kdtree", {}),
        ("bricks", {"region": region}),
    ]
    if depth_cut:
        steps.append(("depthcut", {}))
    results: list[dict[str, Any]] = []
    with ExitStack() as stack:
        address = dask_address or stack.enter_context(dask_cluster(s))
        for name, params in steps:
            result = run_phase(name, s, address, **params)
            results.append(result)
            if stops_chain(name, result):
                log.error("pretractor: %s failed; stopping before the next phase", name)
                break
    return results


def stops_chain(name: str, result: dict[str, Any]) -> bool:
    """Whether a phase's failures leave the next phases nothing: a STOPPING phase's own unit failed.

    Not a merge whose only failures are exposures' merged calibs: those images are left out of
    the CCD tables, and the tables are what the next phases read.
    """
    if name not in STOPPING:
        return False
    own = list(result["failed"])
    if "merge_calibs" in result:
        own = [f for f in own if f not in result["merge_calibs"]["failed"]]
    return bool(own)
