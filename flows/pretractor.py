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

from lsdr.flows.phases import run_phase, stops_chain
from lsdr.flows.settings import settings_for
from lsdr.infra.cluster import dask_cluster

log = logging.getLogger("lsdr.flows")


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
