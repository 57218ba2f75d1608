"""The ``local`` profile: a ``distributed.LocalCluster`` of worker processes on this machine.

Sized by ``infra/profiles/local.yaml`` and the settings' precedence.  A caller that runs
several flows in a row (``lsdr run pretractor``) starts one cluster and hands its address to
every flow, so workers start once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from lsdr.infra.profiles.base import worker_resources

if TYPE_CHECKING:
    from prefect_dask.task_runners import DaskTaskRunner

    from lsdr.infra.settings import Settings

TRIM_THRESHOLD_KEY = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
"""Dask starts worker processes with ``MALLOC_TRIM_THRESHOLD_=65536``.  Setting it at all turns
off glibc's dynamic mmap threshold, so every large numpy array is a fresh ``mmap`` whose pages
fault in on first touch and go back to the kernel on free.  Measured on one 1800² demo brick:
64 s wall with 30 s system time and 13.9 M page faults with it, 34 s, 2.3 s and 0.35 M
without (docs/benchmarks.md).  lsdr's units are long and allocate the same sizes over and
over, so lsdr's workers keep glibc's defaults."""


WORKER_DAEMON_KEY = "distributed.worker.daemon"
"""Dask starts its worker processes as daemonic ones, and ``multiprocessing`` refuses children in
a daemonic process ("daemonic processes are not allowed to have children"): the lite fitblobs'
fork pool (a brick with ``unit_threads`` > 1) would fail in every worker.  lsdr's workers are
started non-daemonic; the nanny still stops its worker when it closes."""

PRELOAD_KEY = "distributed.worker.preload"
SIGNALS_PRELOAD = "lsdr.infra.worker_signals"
"""The preload that makes the workers ignore a Ctrl-C or SIGTERM sent to them with the run."""


def configure_worker_environment() -> None:
    """Configure the worker processes this process starts: malloc, children, signals.

    Unsets Dask's ``MALLOC_TRIM_THRESHOLD_`` (a value already in this process's environment, set
    by the user, is inherited and kept), starts the workers non-daemonic, and adds lsdr's
    signal preload (preloads of one's own are kept).
    """
    import dask

    preloads = list(dask.config.get(PRELOAD_KEY, []))
    if SIGNALS_PRELOAD not in preloads:
        preloads.append(SIGNALS_PRELOAD)
    dask.config.set({TRIM_THRESHOLD_KEY: None, WORKER_DAEMON_KEY: False, PRELOAD_KEY: preloads})


class LocalProfile:
    """Worker processes on this machine (``LocalCluster``), sized by the settings."""

    name = "local"
    knobs: Mapping[str, str] = MappingProxyType(
        {
            "n_workers": "worker processes on this machine ('auto': one per CPU)",
            "threads_per_worker": "threads of each worker: how many units it runs at once",
            "worker_memory": "each worker's memory limit, also its MEMORY_MB resource "
            "('auto': this machine's RAM over the workers)",
            "unit_threads": "threads each unit may use (a brick's runbrick --threads)",
            "unit_memory_limit_mb": "address-space limit of each unit above its worker's size "
            "(MB; none: no limit)",
        }
    )

    def worker_memory_mb(self, settings: Settings) -> int:
        """A worker's memory in MB: ``worker_memory``, or this machine's RAM over the workers.

        "auto" shares the RAM evenly between the workers, as Dask's own "auto" does.
        """
        from dask.utils import parse_bytes

        if settings.worker_memory.strip().lower() == "auto":
            import os

            total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            return max(1, total // settings.n_workers // 2**20)
        return max(1, int(parse_bytes(settings.worker_memory)) // 2**20)

    def check(self, settings: Settings) -> None:
        """Nothing to refuse: every value the settings accept runs on this machine."""

    def cluster_kwargs(self, settings: Settings, resources: Mapping[str, float]) -> dict[str, Any]:
        """``LocalCluster`` arguments: worker processes, threads, memory, free dashboard port."""
        return {
            "n_workers": settings.n_workers,
            "threads_per_worker": settings.threads_per_worker,
            "processes": True,
            "memory_limit": settings.worker_memory,
            "resources": dict(resources),
            "dashboard_address": ":0",
        }

    @contextmanager
    def start(self, settings: Settings, resources: Mapping[str, float]) -> Iterator[str]:
        """Start a ``LocalCluster`` whose workers offer ``resources``; yield its address."""
        from distributed import LocalCluster

        configure_worker_environment()
        cluster = LocalCluster(**self.cluster_kwargs(settings, resources))  # type: ignore[no-untyped-call]
        try:
            yield str(cluster.scheduler_address)
        finally:
            cluster.close()

    def task_runner(self, settings: Settings, address: str | None = None) -> DaskTaskRunner:
        """A ``DaskTaskRunner`` on the cluster at ``address``, or on a new ``LocalCluster``."""
        from prefect_dask.task_runners import DaskTaskRunner

        if address is not None:
            return DaskTaskRunner(address=address)
        configure_worker_environment()
        kwargs = self.cluster_kwargs(settings, worker_resources(self, settings))
        return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=kwargs)
