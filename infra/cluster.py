"""Where Dask workers run: the entry the flows and the CLI call, on the settings' profile.

The ``cluster`` setting names a profile (``infra/profiles/``: a ``ClusterProfile`` class and its
YAML file); this module starts it or gives a flow its task runner, so the flows never name a
profile.  A caller that runs several flows in a row (``lsdr run pretractor``) opens one cluster
and hands its address to every flow, so workers start once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from lsdr.infra.profiles import MEMORY_RESOURCE, get_profile, worker_resources
from lsdr.infra.settings import Settings

if TYPE_CHECKING:
    from prefect_dask.task_runners import DaskTaskRunner

__all__ = ["MEMORY_RESOURCE", "dask_cluster", "task_runner"]


@contextmanager
def dask_cluster(settings: Settings) -> Iterator[str]:
    """Start the settings' cluster, yield its scheduler address, close it afterwards.

    Every worker offers its memory as the ``MEMORY_MB`` resource that bricks ask their share of.
    """
    profile = get_profile(settings.cluster)
    with profile.start(settings, worker_resources(profile, settings)) as address:
        yield address


def task_runner(settings: Settings, address: str | None = None) -> DaskTaskRunner:
    """A ``DaskTaskRunner`` on the cluster at ``address``, or on a new cluster of its own."""
    return get_profile(settings.cluster).task_runner(settings, address)
