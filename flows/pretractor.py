"""``pretractor``: the cookbook's pre-tractor computations, chained, on one Dask cluster.

discover → zeropoints → merge → kdtree → bricks → (depthcut).  A phase with failed units does
not stop the chain when later phases can use what succeeded (a bad image is left out of the
CCD tables and reported); a phase that produced nothing the next one needs stops it.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from typing import Any

from prefect import flow

from lsdr.flows.phases import run_phase, stops_chain
from lsdr.flows.report import PhaseResult
from lsdr.flows.settings import settings_for, writing_release
from lsdr.infra.cluster import dask_cluster
from lsdr.survey.core.phase_options import (
    DepthcutOptions,
    KdtreeOptions,
    PhaseOptions,
    PretractorOptions,
)

log = logging.getLogger("lsdr.flows")


@flow(name="pretractor")
def pretractor(
    release_dir: str,
    options: PretractorOptions | None = None,
    settings: dict[str, Any] | None = None,
    dask_address: str | None = None,
) -> list[PhaseResult]:
    """Run the pre-tractor phases in order, each with its options; return their summaries."""
    o = options or PretractorOptions()
    s = settings_for(release_dir, settings)
    steps: list[PhaseOptions] = [o.discover, o.zeropoints, o.merge, KdtreeOptions(), o.bricks]
    if o.depth_cut:
        steps.append(DepthcutOptions())
    results: list[PhaseResult] = []
    with ExitStack() as stack:
        stack.enter_context(writing_release(s))
        address = dask_address or stack.enter_context(dask_cluster(s))
        for step in steps:
            result = run_phase(step.phase, s, address, step)
            results.append(result)
            if stops_chain(step.phase, result):
                log.error("pretractor: %s failed; stopping before the next phase", step.phase)
                break
    return results
