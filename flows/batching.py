"""How a phase's units go to Dask: batches (one Prefect task each) and the memory they ask.

Batches are sized for two per worker, at most ``batch_size`` units; a batch of units with
memory estimates asks its worker for that much of the ``MEMORY_MB`` resource.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from lsdr.infra.cluster import MEMORY_RESOURCE
from lsdr.infra.settings import Settings
from lsdr.tasks.unit import Unit

log = logging.getLogger("lsdr.flows")


def batches(units: Sequence[Unit], size: int) -> list[list[Unit]]:
    """Split units into batches of at most ``size`` (one Prefect task each)."""
    return [list(units[i : i + size]) for i in range(0, len(units), size)]


def batch_size_for(n_units: int, settings: Settings) -> int:
    """Units per Prefect task: at most ``batch_size``, yet two batches per worker.

    A phase of 20 images must not run as one task on one worker; two batches per worker let a
    worker that finishes early take the next, while each Prefect task (~0.1-0.2 s to submit)
    still carries as many light units as it can (bench/bench_flow_overhead.py).
    """
    per_worker = -(-n_units // (settings.n_workers * 2))
    return max(1, min(settings.batch_size, per_worker))


def memory_capacity_mb() -> int | None:
    """The smallest ``MEMORY_MB`` resource of the flow's Dask workers, if they all have one.

    None outside a Dask task runner or when a worker lacks the resource: then units are not
    annotated, since a task asking for a resource no worker has would wait forever.
    """
    try:
        from prefect.context import FlowRunContext

        context = FlowRunContext.get()
        client = getattr(context.task_runner, "client", None) if context else None
        if client is None:
            return None
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
    except Exception as err:
        log.warning("could not read the workers' memory resources (%s)", err)
        return None
    caps = [w.get("resources", {}).get(MEMORY_RESOURCE) for w in workers]
    if not caps or any(not c for c in caps):
        return None
    return int(min(caps))


def memory_request(batch: Sequence[Unit], capacity: int | None) -> dict[str, int] | None:
    """The Dask resources a batch asks for: its units' memory estimates, at most a worker's.

    A worker runs as many bricks at once as its threads allow while their estimates fit in its
    memory ("two bricks per node"); an estimate above a whole worker still runs, alone.
    """
    need = sum(u.memory_mb for u in batch)
    if capacity is None or need <= 0:
        return None
    return {MEMORY_RESOURCE: min(need, capacity)}
