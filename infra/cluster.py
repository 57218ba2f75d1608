"""Where Dask workers run: the task runner for a flow, sized from the settings.

``local`` is a ``distributed.LocalCluster`` of worker processes on this machine.  A caller
that runs several flows in a row (``lsdr run pretractor``) opens one cluster and hands its
address to every flow, so workers start once.  Batch-system profiles (``local-slurm``,
``perlmutter-cpu``, …) arrive with the cluster issue; asking for them here is a usage error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lsdr.infra.settings import Settings
from lsdr.survey.errors import UsageError

MEMORY_RESOURCE = "MEMORY_MB"
"""Dask worker resource holding the worker's memory in MB: units with a memory estimate (bricks)
ask for their share, so a worker runs several at once only while they fit."""


TRIM_THRESHOLD_KEY = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
"""Dask starts worker processes with ``MALLOC_TRIM_THRESHOLD_=65536``.  Setting it at all turns
off glibc's dynamic mmap threshold, so every large numpy array is a fresh ``mmap`` whose pages
fault in on first touch and go back to the kernel on free.  Measured on one 1800² demo brick:
64 s wall with 30 s system time and 13.9 M page faults with it, 34 s, 2.3 s and 0.35 M
without (docs/benchmarks.md).  lsdr's units are long and allocate the same sizes over and
over, so lsdr's workers keep glibc's defaults."""


def configure_worker_environment() -> None:
    """Unset Dask's ``MALLOC_TRIM_THRESHOLD_`` for the worker processes this process starts.

    A value already in this process's environment (set by the user) is inherited and kept.
    """
    import dask

    dask.config.set({TRIM_THRESHOLD_KEY: None})


def worker_memory_mb(settings: Settings) -> int:
    """A worker's memory in MB: ``worker_memory``, or this machine's RAM over the workers.

    "auto" shares the RAM evenly between the workers, as Dask's own "auto" does.
    """
    from dask.utils import parse_bytes

    if settings.worker_memory.strip().lower() == "auto":
        import os

        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return max(1, total // settings.n_workers // 2**20)
    return max(1, int(parse_bytes(settings.worker_memory)) // 2**20)


def local_cluster_kwargs(settings: Settings) -> dict[str, Any]:
    """``LocalCluster`` arguments: worker processes, threads, memory, free dashboard port.

    The worker memory is also the ``MEMORY_MB`` resource that bricks ask their share of.
    """
    return {
        "n_workers": settings.n_workers,
        "threads_per_worker": settings.threads_per_worker,
        "processes": True,
        "memory_limit": settings.worker_memory,
        "resources": {MEMORY_RESOURCE: worker_memory_mb(settings)},
        "dashboard_address": ":0",
    }


def _check_profile(settings: Settings) -> None:
    if settings.cluster != "local":
        raise UsageError(
            f"cluster profile {settings.cluster!r} is not available yet; use cluster: local"
        )


@contextmanager
def dask_cluster(settings: Settings) -> Iterator[str]:
    """Start the settings' cluster, yield its scheduler address, close it afterwards."""
    from distributed import LocalCluster

    _check_profile(settings)
    configure_worker_environment()
    cluster = LocalCluster(**local_cluster_kwargs(settings))  # type: ignore[no-untyped-call]
    try:
        yield str(cluster.scheduler_address)
    finally:
        cluster.close()


def task_runner(settings: Settings, address: str | None = None) -> Any:
    """A ``DaskTaskRunner`` on the cluster at ``address``, or on a new cluster of its own."""
    from prefect_dask.task_runners import DaskTaskRunner

    if address is not None:
        return DaskTaskRunner(address=address)
    _check_profile(settings)
    configure_worker_environment()
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster", cluster_kwargs=local_cluster_kwargs(settings)
    )
