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


def local_cluster_kwargs(settings: Settings) -> dict[str, Any]:
    """``LocalCluster`` arguments: worker processes, threads, memory; dashboard on a free port."""
    return {
        "n_workers": settings.n_workers,
        "threads_per_worker": settings.threads_per_worker,
        "processes": True,
        "memory_limit": settings.worker_memory,
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
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster", cluster_kwargs=local_cluster_kwargs(settings)
    )
