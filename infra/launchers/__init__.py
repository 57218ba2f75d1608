"""Container launchers: how a worker runs legacypipe's commands, here or in a container image."""

from lsdr.infra.launchers.apptainer import ApptainerLauncher
from lsdr.infra.launchers.base import Launch, Launcher, check_command
from lsdr.infra.launchers.docker import DockerLauncher
from lsdr.infra.launchers.environment import (
    FIXED_VARIABLES,
    ONE_THREAD_VARIABLES,
    REFERENCE_VARIABLES,
    LaunchEnvironment,
    Mount,
    ReferenceCatalogues,
)
from lsdr.infra.launchers.image import ContainerImage, parse_image, parse_sif
from lsdr.infra.launchers.none import NoneLauncher
from lsdr.infra.launchers.podman_hpc import PodmanHpcLauncher
from lsdr.infra.launchers.registry import DEFAULT_LAUNCHER, get_launcher, known_launchers
from lsdr.infra.launchers.runner import Deadline, LaunchResult, run_launched
from lsdr.infra.launchers.shifter import ShifterLauncher, sbatch_image_directive

__all__ = [
    "DEFAULT_LAUNCHER",
    "FIXED_VARIABLES",
    "ONE_THREAD_VARIABLES",
    "REFERENCE_VARIABLES",
    "ApptainerLauncher",
    "ContainerImage",
    "Deadline",
    "DockerLauncher",
    "Launch",
    "LaunchEnvironment",
    "LaunchResult",
    "Launcher",
    "Mount",
    "NoneLauncher",
    "PodmanHpcLauncher",
    "ReferenceCatalogues",
    "ShifterLauncher",
    "check_command",
    "get_launcher",
    "known_launchers",
    "parse_image",
    "parse_sif",
    "run_launched",
    "sbatch_image_directive",
]
