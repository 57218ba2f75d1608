"""The ``shifter`` launcher (NERSC): ``shifter --image=docker:<repo>:<tag> <command>``.

Shifter passes the host's environment into the container, so the unit's variables go in the
launched process's environment (and the catalogue variables not given are removed from it), as
legacypipe's ``bin/runbrick-perlmutter.sh`` exports them before calling Python.  Shifter mounts
NERSC's file systems itself (read-only inputs are read through ``/dvs_ro/cfs/…`` paths), so no
bind mounts are added.  A batch job names its image once, with :func:`sbatch_image_directive`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lsdr.infra.launchers.base import Launch, check_command
from lsdr.infra.launchers.environment import LaunchEnvironment
from lsdr.infra.launchers.image import ContainerImage

SHIFTER = "shifter"
"""Shifter's program, on NERSC's login and compute nodes."""


@dataclass(frozen=True)
class ShifterLauncher:
    """Run the command in a Shifter container of ``image``."""

    image: ContainerImage

    @property
    def name(self) -> str:
        """``shifter``."""
        return "shifter"

    @property
    def executable(self) -> str:
        """``shifter``."""
        return SHIFTER

    def launch(self, command: Sequence[str], environment: LaunchEnvironment) -> Launch:
        """``shifter --image=docker:<repo>:<tag> <command>``, the variables in its environment."""
        return Launch(
            argv=(SHIFTER, f"--image={self.image.shifter}", *check_command(command)),
            environment=environment.variables(),
            unset=environment.unset_variables(),
        )


def sbatch_image_directive(image: ContainerImage) -> str:
    """``#SBATCH --image=docker:<repo>:<tag>``: the line a batch script needs for Shifter.

    SLURM pulls and stages the image for the job's nodes before it starts.
    """
    return f"#SBATCH --image={image.shifter}"
