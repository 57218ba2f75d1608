"""What every container launcher provides: a command and its environment in, what to execute out.

A worker runs legacypipe's scripts (``runbrick.py``, ``legacy_zeropoints.py``, …) through a
launcher: ``none`` runs the command here, the others wrap it in a container (Shifter, podman-hpc,
Apptainer, Docker) with the unit's variables and mounts.  A launcher only builds argument lists;
``runner.py`` executes them.  The command is always an argument list, never a shell string.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from lsdr.survey.core.errors import UsageError

if TYPE_CHECKING:
    from lsdr.infra.launchers.environment import LaunchEnvironment


@dataclass(frozen=True)
class Launch:
    """What to execute: the argument list, and the change to the host's environment it needs.

    ``environment`` is added to the environment the launcher program starts with, and the
    names in ``unset`` are removed from it; for a container these are the launcher's own
    variables (``APPTAINERENV_…``) or the ones it passes through (Shifter).
    """

    argv: tuple[str, ...]
    environment: Mapping[str, str] = field(default_factory=dict)
    unset: tuple[str, ...] = ()

    def process_environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """The full environment of the launched process, starting from ``base`` (the host's)."""
        out = {name: value for name, value in base.items() if name not in self.unset}
        out.update(self.environment)
        return out


@runtime_checkable
class Launcher(Protocol):
    """How a science command runs on a worker: here, or inside a container image."""

    @property
    def name(self) -> str:
        """The launcher's name, as ``get_launcher`` takes it (``shifter``)."""
        ...

    @property
    def executable(self) -> str:
        """The program ``launch`` puts first (``shifter``); ``none``: the command's own."""
        ...

    def launch(self, command: Sequence[str], environment: LaunchEnvironment) -> Launch:
        """The argument list and environment that run ``command`` in ``environment``."""
        ...


def check_command(command: Sequence[str]) -> tuple[str, ...]:
    """``command`` as a tuple, or a :class:`UsageError` if it is a string or empty."""
    if isinstance(command, str):
        raise UsageError(
            f"command {command!r} is a string: give an argument list, as in "
            "['python', '-O', 'legacypipe/runbrick.py', '--brick', '1804p325']"
        )
    argv = tuple(command)
    if not argv or not argv[0]:
        raise UsageError(f"command {list(argv)!r} names no program: give its argument list")
    for arg in argv:
        if not isinstance(arg, str):
            raise UsageError(f"command argument {arg!r} is not a string: give str arguments")
    return argv


def variable_options(flag: str, variables: Mapping[str, str]) -> list[str]:
    """``[flag, NAME=value, …]`` for each variable: podman's and docker's ``-e``."""
    return [part for name, value in variables.items() for part in (flag, f"{name}={value}")]
