"""Cluster profiles by name: each is a class implementing ``ClusterProfile`` and a YAML file.

The ``cluster`` setting names one.  A profile's file, ``infra/profiles/<name>.yaml``, holds its
values of the settings it reads (its knobs); ``infra/settings.py`` folds the file into the
settings' precedence, below the release's config file, so the release, the environment and the
command line override it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lsdr.infra.profiles.base import ClusterProfile
from lsdr.infra.profiles.local import LocalProfile
from lsdr.infra.profiles.local_slurm import local_slurm
from lsdr.infra.profiles.slurm import cori_haswell, cori_knl, perlmutter_cpu
from lsdr.survey.core.errors import UsageError

DEFAULT_PROFILE = "local"
"""The profile a release runs on unless its settings name another."""

PROFILE_DIR = Path(__file__).resolve().parent
"""Where the profiles' files are: ``<name>.yaml`` next to this module."""

PROFILES: dict[str, Callable[[], ClusterProfile]] = {
    "local": LocalProfile,
    "local-slurm": local_slurm,
    "perlmutter-cpu": perlmutter_cpu,
    "cori-haswell": cori_haswell,
    "cori-knl": cori_knl,
}
"""The known profiles, each by its name with what makes it (its class, or a SLURM site's)."""


def known_profiles() -> list[str]:
    """The profile names the ``cluster`` setting accepts."""
    return list(PROFILES)


def get_profile(name: str) -> ClusterProfile:
    """The profile called ``name``; an unknown name is a one-line :class:`UsageError`."""
    if name not in PROFILES:
        raise UsageError(
            f"unknown cluster profile {name!r}: known profiles are {', '.join(known_profiles())}"
        )
    return PROFILES[name]()


def profile_file(name: str) -> Path:
    """The file that ships with profile ``name``: its knobs' values."""
    return PROFILE_DIR / f"{get_profile(name).name}.yaml"
