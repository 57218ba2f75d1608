"""SLURM site profiles: ``dask_jobqueue.SLURMCluster`` worker jobs, one whole node each.

One :class:`SlurmProfile` class serves every SLURM site; a :class:`SlurmSite` holds what
differs between them (the node's constraint, cores, memory and network interface, the QOS names
the site accepts).  Each job is one node running ``bricks_per_node`` worker processes of one
thread each, so a worker runs one brick at a time and the brick uses ``unit_threads`` threads
(runbrick's ``--threads``); the job books ``bricks_per_node × unit_threads`` CPUs.

NERSC facts that shape the script (``docs/nersc.md``): the node type is a constraint
(``-C cpu``), never ``queue``, which dask-jobqueue turns into ``-p``; QOS and account are
directives of their own; workers leave (``--lifetime``, staggered) before SLURM ends the job at
its walltime, and the task runner adapts with minimum = maximum jobs, so a job that leaves or
is lost is replaced (a fixed pool never replaces one: ``../shared/research/local-slurm.md``).
Constructing a ``SLURMCluster`` starts only its scheduler; jobs are submitted when it scales.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from lsdr.infra.profiles.base import ProfileSettingError, worker_resources

if TYPE_CHECKING:
    from prefect_dask.task_runners import DaskTaskRunner

    from lsdr.infra.settings import Settings

EXCLUSIVE_MEMORY = "0"
"""``--mem=0``: the job gets all the memory of its node.  Chosen over the node's nominal size
(512 GB on Perlmutter CPU) because SLURM refuses a request above a node's schedulable memory,
which is less than the nominal size and changes with the OS image; a whole-node job loses
nothing by asking for all of it."""

KEEP_GLIBC_MALLOC = (
    "export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON=\"{'MALLOC_TRIM_THRESHOLD_': None}\""
)
"""The job's line that keeps glibc's malloc defaults in its workers, as ``local`` does
(``local.TRIM_THRESHOLD_KEY`` says why): Dask reads the variable as its config value, a dict
that merges into ``distributed.nanny.pre-spawn-environ``, and a ``None`` there is not set."""

WORKERS_MAY_FORK = "export DASK_DISTRIBUTED__WORKER__DAEMON=False"
"""The job's line that starts its workers non-daemonic, as ``local`` does
(``local.WORKER_DAEMON_KEY`` says why: a unit may start processes of its own)."""

SLURM_KNOBS: Mapping[str, str] = MappingProxyType(
    {
        "nodes": "worker jobs, one node each; the pool is kept at this size",
        "bricks_per_node": "worker processes per job: bricks a node runs at once",
        "unit_threads": "threads per brick (runbrick --threads); bricks_per_node × unit_threads "
        "CPUs are booked per node",
        "unit_memory_limit_mb": "address-space limit of each unit above its worker's size "
        "(MB; none: no limit)",
        "account": "NERSC project charged (--account); none: your default project",
        "qos": "quality of service (--qos): one the site accepts",
        "walltime": "each job's time limit, HH:MM:SS or D-HH:MM:SS",
        "worker_lifetime": "how long a worker runs before it leaves gracefully (dask --lifetime, "
        "e.g. '110m'); with lifetime_stagger below the walltime",
        "lifetime_stagger": "random spread of worker_lifetime (dask --lifetime-stagger), so the "
        "workers of a pool do not all leave at once",
        "launcher": "how legacypipe's image runs: shifter (the job's --image directive) or "
        "podman-hpc (pulled beforehand, no directive)",
        "image": "legacypipe's container image, repository:tag (none: no image)",
    }
)
"""The settings every SLURM profile reads, each with what it means there: its file's keys."""


@dataclass(frozen=True)
class SlurmSite:
    """One SLURM machine's node type: what its batch script asks for and what a node has."""

    name: str
    """The profile's name, as the ``cluster`` setting gives it."""
    constraint: str
    """The node type, as ``-C <constraint>``."""
    cores: int
    """Cores of one node (physical cores, as the cookbook counts them)."""
    memory: str
    """One node's memory, with its unit."""
    interface: str
    """The high-speed network interface of the compute nodes: the workers' and scheduler's."""
    qos: tuple[str, ...]
    """The QOS names this profile accepts."""


PERLMUTTER_CPU = SlurmSite(
    name="perlmutter-cpu",
    constraint="cpu",
    cores=128,
    memory="512GB",
    interface="hsn0",
    qos=("regular", "debug", "realtime", "shared"),
)
"""Perlmutter's CPU nodes: two 64-core AMD EPYC 7763, 512 GB, Slingshot (``hsn0``)."""

CORI_HASWELL = SlurmSite(
    name="cori-haswell",
    constraint="haswell",
    cores=32,
    memory="128GB",
    interface="ipogif0",
    qos=("regular", "debug", "premium", "shared"),
)
"""Cori's Haswell nodes (retired 2023, kept for the record): 32 cores, 128 GB, Aries."""

CORI_KNL = SlurmSite(
    name="cori-knl",
    constraint="knl",
    cores=68,
    memory="96GB",
    interface="ipogif0",
    qos=("regular", "debug", "premium"),
)
"""Cori's KNL nodes (retired 2023, kept for the record): 68 cores, 96 GB DDR, Aries."""


def walltime_seconds(walltime: str) -> int:
    """``HH:MM:SS`` or ``D-HH:MM:SS`` in seconds (the settings have checked the form)."""
    days, _, clock = walltime.rpartition("-")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds


class SlurmProfile:
    """Dask workers in SLURM jobs on one site's nodes (``dask_jobqueue.SLURMCluster``)."""

    knobs = SLURM_KNOBS

    def __init__(self, site: SlurmSite) -> None:
        """A profile for ``site``'s nodes."""
        self.site = site

    @property
    def name(self) -> str:
        """The site's profile name (``perlmutter-cpu``)."""
        return self.site.name

    def job_cpus(self, settings: Settings) -> int:
        """CPUs one job books: its bricks times their threads."""
        return settings.bricks_per_node * settings.unit_threads

    def job_memory_bytes(self, settings: Settings) -> int:
        """Memory of one job: the node's, or its CPUs' share of it under the ``shared`` QOS."""
        from dask.utils import parse_bytes

        node = int(parse_bytes(self.site.memory))
        if settings.qos == "shared":
            return node * self.job_cpus(settings) // self.site.cores
        return node

    def worker_memory_mb(self, settings: Settings) -> int:
        """A worker's memory in MB: the job's memory over its bricks."""
        return max(1, self.job_memory_bytes(settings) // settings.bricks_per_node // 2**20)

    def check(self, settings: Settings) -> None:
        """Refuse settings this site cannot run, naming the setting and the fix.

        The QOS must be one of the site's; a node must hold the bricks' threads; workers must
        leave before the walltime, stagger included.
        """
        site = self.site
        if settings.qos not in site.qos:
            raise ProfileSettingError(
                "qos",
                f"{settings.qos!r} is not a QOS of {site.name}: give one of {', '.join(site.qos)}",
            )
        if self.job_cpus(settings) > site.cores:
            raise ProfileSettingError(
                "bricks_per_node",
                f"{settings.bricks_per_node} bricks × {settings.unit_threads} threads "
                f"(unit_threads) = {self.job_cpus(settings)} is more than the {site.cores} cores "
                f"of a {site.name} node: lower bricks_per_node or unit_threads",
            )
        self.check_lifetime(settings)

    def check_lifetime(self, settings: Settings) -> None:
        """Workers leave before the walltime, stagger included, and never at once."""
        from dask.utils import parse_timedelta

        lifetime = parse_timedelta(settings.worker_lifetime)
        stagger = parse_timedelta(settings.lifetime_stagger)
        if lifetime + stagger >= walltime_seconds(settings.walltime):
            raise ProfileSettingError(
                "worker_lifetime",
                f"{settings.worker_lifetime} ± {settings.lifetime_stagger} (lifetime_stagger) "
                f"reaches the walltime {settings.walltime}: give a worker_lifetime plus "
                "lifetime_stagger below it, so workers leave before SLURM ends their job",
            )
        if stagger >= lifetime:
            raise ProfileSettingError(
                "lifetime_stagger",
                f"{settings.lifetime_stagger} is not below worker_lifetime "
                f"{settings.worker_lifetime}: a worker could leave at once; give a smaller one",
            )

    def directives(self, settings: Settings) -> list[str]:
        """The ``#SBATCH`` lines beyond dask-jobqueue's own: constraint, QOS, account, image."""
        lines = [f"-C {self.site.constraint}", f"--qos={settings.qos}"]
        if settings.account is not None:
            lines.append(f"--account={settings.account}")
        if settings.launcher == "shifter" and settings.image is not None:
            lines.append(f"--image=docker:{settings.image}")
        return lines

    def cluster_kwargs(self, settings: Settings, resources: Mapping[str, float]) -> dict[str, Any]:
        """``SLURMCluster`` arguments: one node per job, one thread per brick worker.

        ``cores`` = ``processes`` = bricks per node gives each worker process one Dask thread
        (one brick at a time); ``job_cpu`` books the bricks' threads.  Account and QOS go in
        directives, not ``account``/``queue``, so the script says ``--qos``/``--account``
        and never ``-p``.
        """
        self.check(settings)
        worker_args = [
            f"{name}={int(value) if float(value).is_integer() else value}"
            for name, value in resources.items()
        ]
        return {
            "job_name": "lsdr-worker",
            "cores": settings.bricks_per_node,
            "processes": settings.bricks_per_node,
            "memory": f"{self.job_memory_bytes(settings)}B",
            "job_cpu": self.job_cpus(settings),
            "job_mem": None if settings.qos == "shared" else EXCLUSIVE_MEMORY,
            "walltime": settings.walltime,
            "interface": self.site.interface,
            "death_timeout": 60,
            "job_extra_directives": self.directives(settings),
            "job_script_prologue": [KEEP_GLIBC_MALLOC, WORKERS_MAY_FORK],
            "worker_extra_args": [
                "--resources",
                ",".join(worker_args),
                "--lifetime",
                settings.worker_lifetime,
                "--lifetime-stagger",
                settings.lifetime_stagger,
            ],
            "scheduler_options": {"dashboard_address": ":0"},
        }

    def adapt_kwargs(self, settings: Settings) -> dict[str, int]:
        """A pool of exactly ``nodes`` jobs that replaces a job that leaves or is lost."""
        return {"minimum_jobs": settings.nodes, "maximum_jobs": settings.nodes}

    @contextmanager
    def start(self, settings: Settings, resources: Mapping[str, float]) -> Iterator[str]:
        """Start the scheduler, keep ``nodes`` worker jobs submitted; yield its address."""
        from dask_jobqueue.slurm import SLURMCluster

        cluster = SLURMCluster(**self.cluster_kwargs(settings, resources))
        try:
            cluster.adapt(**self.adapt_kwargs(settings))
            yield str(cluster.scheduler_address)
        finally:
            cluster.close()

    def task_runner(self, settings: Settings, address: str | None = None) -> DaskTaskRunner:
        """A ``DaskTaskRunner`` on the cluster at ``address``, or on a new ``SLURMCluster``."""
        from prefect_dask.task_runners import DaskTaskRunner

        if address is not None:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(
            cluster_class="dask_jobqueue.SLURMCluster",
            cluster_kwargs=self.cluster_kwargs(settings, worker_resources(self, settings)),
            adapt_kwargs=self.adapt_kwargs(settings),
        )


def perlmutter_cpu() -> SlurmProfile:
    """The ``perlmutter-cpu`` profile."""
    return SlurmProfile(PERLMUTTER_CPU)


def cori_haswell() -> SlurmProfile:
    """The ``cori-haswell`` profile (for the record: Cori retired in 2023)."""
    return SlurmProfile(CORI_HASWELL)


def cori_knl() -> SlurmProfile:
    """The ``cori-knl`` profile (for the record: Cori retired in 2023)."""
    return SlurmProfile(CORI_KNL)
