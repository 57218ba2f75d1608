"""The phases by name, in chain order, and how a chain runs one: the one phase registry.

A chain (``pretractor``, ``release``) or the CLI runs a phase by its name, on a shared Dask
cluster; the names are the CLI's, the ledger's and the flows' own.
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Any

from lsdr.flows.bricks import bricks
from lsdr.flows.brightneighbors import brightneighbors
from lsdr.flows.depth import depth
from lsdr.flows.depthcut import depthcut
from lsdr.flows.discover import discover
from lsdr.flows.external import external
from lsdr.flows.kdtree import kdtree
from lsdr.flows.merge import merge
from lsdr.flows.package import package
from lsdr.flows.publish import publish
from lsdr.flows.report import MergeResult, PhaseResult
from lsdr.flows.summary import summary
from lsdr.flows.sweeps import sweeps
from lsdr.flows.tractor import tractor
from lsdr.flows.zeropoints import zeropoints
from lsdr.infra.cluster import task_runner
from lsdr.infra.errors import ServerError
from lsdr.infra.settings import Settings
from lsdr.survey.core.phase_options import PhaseOptions

PHASE_FLOWS: dict[str, Any] = {
    "discover": discover,
    "zeropoints": zeropoints,
    "merge": merge,
    "kdtree": kdtree,
    "bricks": bricks,
    "depthcut": depthcut,
    "tractor": tractor,
    "brightneighbors": brightneighbors,
    "depth": depth,
    "summary": summary,
    "sweeps": sweeps,
    "external": external,
    "package": package,
    "publish": publish,
}
"""The phase flows by name, in chain order (``pretractor`` runs discover … depthcut)."""

STOPPING = {"discover", "merge", "kdtree"}
"""Phases whose failure leaves nothing for the next phase to use."""


def run_phase(
    name: str,
    settings: Settings,
    address: str | None = None,
    options: PhaseOptions | None = None,
) -> PhaseResult:
    """Run one phase flow with its options on the cluster at ``address`` (or its own cluster).

    Inside a parent flow (pretractor, release) the phase runs without its own heartbeat
    thread: the parent's heartbeats already show the process alive, and stopping a
    heartbeat thread costs up to a second per sub-flow (it sleeps in 1 s steps), which was
    most of a no-op rerun of the demo.
    """
    from prefect.context import FlowRunContext
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from lsdr.infra import server_watch

    phase_flow = PHASE_FLOWS[name].with_options(task_runner=task_runner(settings, address))
    kept: list[PhaseResult] = []
    phase_flow.fn = _keeping(phase_flow.fn, kept)
    updates = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None} if FlowRunContext.get() else {}
    watch = server_watch.current()
    with temporary_settings(updates=updates):
        if watch is not None:
            watch.register_current()  # this block's settings go offline with the server too
        try:
            result: PhaseResult = phase_flow(
                release_dir=str(settings.release_dir),
                options=options,
                settings=_overrides(settings),
            )
        except Exception as err:
            if not server_watch.server_lost():
                raise
            if kept:
                # The flow's units ran and are recorded; only its final state went unreported.
                return kept[0]
            raise ServerError(
                f"phase {name} not run: the Prefect server {watch.url if watch else ''} went "
                f"away ({type(err).__name__}); 'lsdr server up --release-dir "
                f"{settings.release_dir}' restarts it, then run again: the units done are kept"
            ) from None
    return result


def _keeping(fn: Any, kept: list[PhaseResult]) -> Any:
    """``fn`` that also keeps what it returns in ``kept``: a flow's result, whatever its state.

    Once the server is gone Prefect cannot record the flow's end and raises; the result,
    computed by then, is still the phase's.
    """

    @functools.wraps(fn)
    def keeping(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        kept.append(result)
        return result

    # The flow's signature with its annotations resolved where the flow is defined: Prefect
    # validates the parameters by it, and would resolve the names in this module instead.
    hints = typing.get_type_hints(fn)
    signature = inspect.signature(fn)
    keeping.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in signature.parameters.values()
        ],
        return_annotation=hints.get("return", signature.return_annotation),
    )
    return keeping


def _overrides(settings: Settings) -> dict[str, Any]:
    """The settings as overrides for a sub-flow (so it sees exactly what the parent saw)."""
    return settings.model_dump(mode="json", exclude={"release_dir"})


def stops_chain(name: str, result: PhaseResult) -> bool:
    """Whether a phase's failures leave the next phases nothing: a STOPPING phase's own unit failed.

    Not a merge whose only failures are exposures' merged calibs: those images are left out of
    the CCD tables, and the tables are what the next phases read.
    """
    if name not in STOPPING:
        return False
    own = list(result.failed)
    if isinstance(result, MergeResult) and result.merge_calibs is not None:
        own = [f for f in own if f not in result.merge_calibs.failed]
    return bool(own)
