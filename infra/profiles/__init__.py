"""Cluster profiles: where Dask workers run, one ``ClusterProfile`` class and YAML file each."""

from lsdr.infra.profiles.base import (
    MEMORY_RESOURCE,
    ClusterProfile,
    ProfileSettingError,
    worker_resources,
)
from lsdr.infra.profiles.local import LocalProfile
from lsdr.infra.profiles.registry import (
    DEFAULT_PROFILE,
    get_profile,
    known_profiles,
    profile_file,
)
from lsdr.infra.profiles.slurm import SlurmProfile, SlurmSite

__all__ = [
    "DEFAULT_PROFILE",
    "MEMORY_RESOURCE",
    "ClusterProfile",
    "LocalProfile",
    "ProfileSettingError",
    "SlurmProfile",
    "SlurmSite",
    "get_profile",
    "known_profiles",
    "profile_file",
    "worker_resources",
]
