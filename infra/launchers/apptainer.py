"""The ``apptainer`` launcher: ``apptainer exec --cleanenv --bind … <image> <command>``.

``--cleanenv`` keeps the host's environment (its ``PYTHONPATH``, its venv) out of the container,
as the NERSC wrappers warn never to override the image's ``PYTHONPATH``; the unit's variables
go in as ``APPTAINERENV_<NAME>`` variables of the ``apptainer`` process, which Apptainer passes
through ``--cleanenv`` unchanged whatever characters a value holds.  The image is a ``.sif``
file or ``docker://<repo>:<tag>``; inputs are bound read-only, outputs and the unit writable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from lsdr.infra.launchers.base import Launch, check_command
from lsdr.infra.launchers.environment import LaunchEnvironment
from lsdr.infra.launchers.image import ContainerImage

APPTAINER = "apptainer"
"""Apptainer's program (Singularity's successor)."""

ENV_PREFIX = "APPTAINERENV_"
"""The prefix of host variables Apptainer sets, without it, inside the container."""


@dataclass(frozen=True)
class ApptainerLauncher:
    """Run the command in an Apptainer container of ``image`` (a registry image or a .sif)."""

    image: ContainerImage | PurePosixPath

    @property
    def name(self) -> str:
        """``apptainer``."""
        return "apptainer"

    @property
    def executable(self) -> str:
        """``apptainer``."""
        return APPTAINER

    @property
    def image_argument(self) -> str:
        """The image as ``apptainer exec`` takes it: the .sif path or ``docker://<repo>:<tag>``."""
        if isinstance(self.image, ContainerImage):
            return f"docker://{self.image.reference}"
        return str(self.image)

    def launch(self, command: Sequence[str], environment: LaunchEnvironment) -> Launch:
        """``apptainer exec --cleanenv``, the binds, the image, the command; variables prefixed."""
        argv = check_command(command)
        environment.check_mounted(self.name)
        binds = [part for mount in environment.mounts for part in ("--bind", mount.spec)]
        return Launch(
            argv=(APPTAINER, "exec", "--cleanenv", *binds, self.image_argument, *argv),
            environment={
                f"{ENV_PREFIX}{name}": value for name, value in environment.variables().items()
            },
        )
