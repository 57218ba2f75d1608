"""What every cluster profile provides: the seam between lsdr's flows and where Dask runs.

A profile turns the settings (sized by its profile file, ``infra/profiles/<name>.yaml``, and the
settings' precedence) into running Dask workers and into the task runner a Prefect flow submits
its units to.  ``local`` (``local.py``) starts a ``distributed.LocalCluster`` on this machine; a
batch-system profile (``dask_jobqueue.SLURMCluster``) implements the same members without a
change to ``flows/`` or ``tasks/``, which reach a profile only through ``infra/cluster.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from prefect_dask.task_runners import DaskTaskRunner

    from lsdr.infra.settings import Settings

MEMORY_RESOURCE = "MEMORY_MB"
"""Dask worker resource holding the worker's memory in MB: units with a memory estimate (bricks)
ask for their share, so a worker runs several at once only while they fit."""


@runtime_checkable
class ClusterProfile(Protocol):
    """Where a release's Dask workers run: how they start, their size, a flow's task runner."""

    @property
    def name(self) -> str:
        """The profile's name, as the ``cluster`` setting gives it (``local``)."""
        ...

    @property
    def knobs(self) -> Mapping[str, str]:
        """The settings this profile reads, each with what it means here: its file's keys."""
        ...

    def worker_memory_mb(self, settings: Settings) -> int:
        """The memory (MB) the profile gives each worker: its limit and its ``MEMORY_MB``."""
        ...

    def start(
        self, settings: Settings, resources: Mapping[str, float]
    ) -> AbstractContextManager[str]:
        """Start the workers, each offering ``resources``; yield the scheduler's address.

        Leaving the context stops them.  Callers pass :func:`worker_resources`.
        """
        ...

    def task_runner(self, settings: Settings, address: str | None = None) -> DaskTaskRunner:
        """A flow's task runner on the cluster at ``address``, or on a new one of its own."""
        ...


def worker_resources(profile: ClusterProfile, settings: Settings) -> dict[str, float]:
    """The Dask resources every worker of ``profile`` offers: its memory as ``MEMORY_MB``."""
    return {MEMORY_RESOURCE: profile.worker_memory_mb(settings)}
