"""The ``none`` launcher: the command itself, run here, with the unit's variables.

Used where there is no container (this machine, CI): the real legacypipe built from ``vendor/``
runs directly.  The process inherits the host's environment (``PATH``, the venv) with the unit's
variables over it and the reference-catalogue variables not given removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lsdr.infra.launchers.base import Launch, check_command
from lsdr.infra.launchers.environment import LaunchEnvironment


@dataclass(frozen=True)
class NoneLauncher:
    """Run the command as it is, on this host."""

    @property
    def name(self) -> str:
        """``none``."""
        return "none"

    @property
    def executable(self) -> str:
        """No program of its own: the command's first argument is what must exist."""
        return ""

    def launch(self, command: Sequence[str], environment: LaunchEnvironment) -> Launch:
        """The command unchanged; the unit's variables in its environment."""
        return Launch(
            argv=check_command(command),
            environment=environment.variables(),
            unset=environment.unset_variables(),
        )
