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

from lsdr.survey.core.errors import UsageError

if TYPE_CHECKING:
    from prefect_dask.task_runners import DaskTaskRunner

    from lsdr.infra.settings import Settings

MEMORY_RESOURCE = "MEMORY_MB"
"""Dask worker resource holding the worker's memory in MB: units with a memory estimate (bricks)
ask for their share, so a worker runs several at once only while they fit."""


class ProfileSettingError(UsageError):
    """A setting the profile cannot run with: its ``key`` and the reason, with the fix.

    ``load_settings`` prefixes where the key was given (a file and key, a variable), so the
    error is the same one line as a bad value's.
    """

    def __init__(self, key: str, reason: str) -> None:
        """The setting ``key`` and why it is refused."""
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


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

    def check(self, settings: Settings) -> None:
        """Refuse settings the profile cannot run, before anything starts.

        Checks across settings and against the machine (a node's cores, the site's QOS names)
        that no single field can make; raises :class:`ProfileSettingError`.
        """
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
