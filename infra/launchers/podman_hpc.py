"""The ``podman-hpc`` launcher (NERSC Perlmutter): ``podman-hpc run --rm -v … -e … <image> …``.

A podman container starts with the image's environment, not the host's, so the unit's variables
are passed with ``-e``; the inputs are bound read-only (``:ro``), the outputs and the unit's
directory writable, each at the same path so the command's paths mean the same inside.  The
image must have been migrated to the compute nodes' store first (``podman-hpc migrate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lsdr.infra.launchers.base import Launch, check_command, variable_options
from lsdr.infra.launchers.environment import LaunchEnvironment
from lsdr.infra.launchers.image import ContainerImage

PODMAN_HPC = "podman-hpc"
"""NERSC's wrapper around rootless podman."""


@dataclass(frozen=True)
class PodmanHpcLauncher:
    """Run the command in a podman-hpc container of ``image``."""

    image: ContainerImage

    @property
    def name(self) -> str:
        """``podman-hpc``."""
        return "podman-hpc"

    @property
    def executable(self) -> str:
        """``podman-hpc``."""
        return PODMAN_HPC

    def launch(self, command: Sequence[str], environment: LaunchEnvironment) -> Launch:
        """``podman-hpc run --rm``, the mounts, the ``-e`` variables, the image, the command."""
        argv = check_command(command)
        environment.check_mounted(self.name)
        mounts = [part for mount in environment.mounts for part in ("-v", mount.spec)]
        return Launch(
            argv=(
                PODMAN_HPC,
                "run",
                "--rm",
                *mounts,
                *variable_options("-e", environment.variables()),
                self.image.reference,
                *argv,
            )
        )
