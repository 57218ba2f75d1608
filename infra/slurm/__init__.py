"""SLURM on this machine for the ``local-slurm`` profile: ``lsdr slurm up|down|status``."""

from lsdr.infra.slurm.accounting import AccountedJob, Accounting, accounted_jobs
from lsdr.infra.slurm.local import LocalSlurm, SlurmJob, SlurmStatus, default_dir, jobs

__all__ = [
    "AccountedJob",
    "Accounting",
    "LocalSlurm",
    "SlurmJob",
    "SlurmStatus",
    "accounted_jobs",
    "default_dir",
    "jobs",
]
