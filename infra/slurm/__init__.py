"""SLURM on this machine for the ``local-slurm`` profile: ``lsdr slurm up|down|status``."""

from lsdr.infra.slurm.local import LocalSlurm, SlurmJob, SlurmStatus, default_dir, jobs

__all__ = ["LocalSlurm", "SlurmJob", "SlurmStatus", "default_dir", "jobs"]
