"""The ``local-slurm`` profile: Dask workers as real SLURM jobs on this machine's own SLURM.

The cluster is the one ``lsdr slurm up`` starts (``infra/slurm/local.py``); its configuration is
found through ``SLURM_CONF``, which this profile sets for the flow's process (and so for the
``sbatch`` calls dask-jobqueue makes and the jobs, which inherit the environment).  As at a
site: a pool of exactly ``nodes`` jobs that replaces a job that leaves or is lost, each job
``bricks_per_node`` single-threaded workers, workers leaving (``--lifetime``, staggered) before
the walltime.  Unlike a site: no constraint, QOS or account directives (the local cluster has
no accounting), the scheduler on 127.0.0.1, and each job's output in the release's
``state/slurm/worker-<job id>.out``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsdr.infra.profiles.base import ProfileSettingError
from lsdr.infra.profiles.slurm import SLURM_KNOBS, SlurmProfile, SlurmSite
from lsdr.survey.core.errors import UsageError

if TYPE_CHECKING:
    from lsdr.infra.settings import Settings

LOCAL_KNOBS = {
    key: meaning
    for key, meaning in SLURM_KNOBS.items()
    if key not in ("account", "qos", "launcher", "image")
}
"""The SLURM knobs that mean something on one's own machine (no project, no QOS)."""


def local_site() -> SlurmSite:
    """The machine as one SLURM node: its CPUs and the memory ``lsdr slurm up`` offers."""
    from lsdr.infra.slurm.local import MEMORY_SHARE, machine_memory_mb

    return SlurmSite(
        name="local-slurm",
        constraint="",
        cores=os.cpu_count() or 1,
        memory=f"{int(machine_memory_mb() * MEMORY_SHARE)}MB",
        interface="",
        qos=(),
    )


class LocalSlurmProfile(SlurmProfile):
    """Worker jobs on the local SLURM (``lsdr slurm up``)."""

    knobs = LOCAL_KNOBS

    def __init__(self) -> None:
        """A profile for this machine's one node."""
        super().__init__(local_site())

    def job_memory_bytes(self, settings: Settings) -> int:
        """A job's memory: the node's share of one job of ``nodes`` (they share the node)."""
        from dask.utils import parse_bytes

        return int(parse_bytes(self.site.memory)) // max(settings.nodes, 1)

    def check(self, settings: Settings) -> None:
        """The jobs must fit the node together, and workers leave before the walltime."""
        total = settings.nodes * self.job_cpus(settings)
        if total > self.site.cores:
            raise ProfileSettingError(
                "nodes",
                f"{settings.nodes} jobs × {self.job_cpus(settings)} CPUs (bricks_per_node × "
                f"unit_threads) = {total} is more than this machine's {self.site.cores} CPUs: "
                "the jobs would wait for each other; lower nodes, bricks_per_node or unit_threads",
            )
        self.check_lifetime(settings)

    def worker_log_dir(self, settings: Settings) -> Path:
        """``state/slurm/`` of the release: the worker jobs' output files."""
        from lsdr.survey.core.layout import ReleaseLayout

        return ReleaseLayout(settings.release_dir).state_dir / "slurm"

    def directives(self, settings: Settings) -> list[str]:
        """Only the job's output file, ``state/slurm/worker-<job id>.out`` of the release."""
        return [f"--output={self.worker_log_dir(settings)}/worker-%j.out"]

    def cluster_kwargs(self, settings: Settings, resources: Mapping[str, float]) -> dict[str, Any]:
        """The site arguments, with the job's memory asked for and the scheduler on loopback."""
        kwargs = super().cluster_kwargs(settings, resources)
        kwargs.update(
            job_mem=None,
            interface=None,
            scheduler_options={"host": "127.0.0.1", "dashboard_address": ":0"},
        )
        return kwargs

    @contextmanager
    def start(self, settings: Settings, resources: Mapping[str, float]) -> Iterator[str]:
        """Point SLURM commands at the local cluster, then start the pool as a site does."""
        use_local_slurm(settings)
        self.worker_log_dir(settings).mkdir(parents=True, exist_ok=True)
        with super().start(settings, resources) as address:
            yield address

    def task_runner(self, settings: Settings, address: str | None = None) -> Any:
        """The site's task runner, with SLURM commands pointed at the local cluster."""
        use_local_slurm(settings)
        self.worker_log_dir(settings).mkdir(parents=True, exist_ok=True)
        return super().task_runner(settings, address)


def use_local_slurm(settings: Settings) -> None:
    """Set ``SLURM_CONF`` to the local cluster's (unless set) and check that it is up."""
    from lsdr.infra.slurm.local import LocalSlurm

    del settings  # one local cluster per machine, wherever the release is
    cluster = LocalSlurm.default()
    conf = os.environ.setdefault("SLURM_CONF", str(cluster.conf))
    if not os.path.exists(conf):
        raise UsageError(
            f"no local SLURM at {conf}: start it with 'lsdr slurm up' (its files go to "
            "$LSDR_SLURM_DIR, default /var/lib/lsdr/slurm)"
        )


def local_slurm() -> LocalSlurmProfile:
    """The ``local-slurm`` profile."""
    return LocalSlurmProfile()
