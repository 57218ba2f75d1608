"""The ``docker`` launcher (a workstation): ``docker run --rm --user … -v … -e … <image> …``.

As podman-hpc: the unit's variables with ``-e`` (a container does not inherit the host's), the
inputs bound read-only, the outputs and the unit's directory writable, at the same paths.  The
container runs as the given user (``uid:gid``) so that the files it writes into the release
belong to the user who runs it, not to root.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lsdr.infra.launchers.base import Launch, check_command, variable_options
from lsdr.infra.launchers.environment import LaunchEnvironment
from lsdr.infra.launchers.image import ContainerImage

DOCKER = "docker"
"""Docker's client program."""


@dataclass(frozen=True)
class DockerLauncher:
    """Run the command in a Docker container of ``image``, as ``user`` when given."""

    image: ContainerImage
    user: str | None = None

    @property
    def name(self) -> str:
        """``docker``."""
        return "docker"

    @property
    def executable(self) -> str:
        """``docker``."""
        return DOCKER

    def launch(self, command: Sequence[str], environment: LaunchEnvironment) -> Launch:
        """``docker run --rm``, the user, the mounts, the ``-e`` variables, image and command."""
        argv = check_command(command)
        environment.check_mounted(self.name)
        user = ["--user", self.user] if self.user else []
        mounts = [part for mount in environment.mounts for part in ("-v", mount.spec)]
        return Launch(
            argv=(
                DOCKER,
                "run",
                "--rm",
                *user,
                *mounts,
                *variable_options("-e", environment.variables()),
                self.image.reference,
                *argv,
            )
        )
