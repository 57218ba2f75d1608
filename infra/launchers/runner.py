"""Run a launched command: no shell, its output in the unit's log, its exit code returned.

The exit code is forwarded, not judged: legacypipe exits 0 with no catalogue on a brick with no
data, so whether a unit is done is decided by its outputs (the engine's job).  A launcher or
command that is not installed is the environment's fault, raised as
:class:`~lsdr.survey.core.errors.MissingDependencyError` before anything is started.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lsdr.infra.launchers.base import Launcher
from lsdr.infra.launchers.environment import LaunchEnvironment
from lsdr.survey.core.errors import MissingDependencyError


@dataclass(frozen=True)
class LaunchResult:
    """How a launched command ended: its exit code and the log holding its output."""

    exit_code: int
    log: Path


def run_launched(
    launcher: Launcher,
    command: Sequence[str],
    environment: LaunchEnvironment,
    log: Path,
    host_environment: Mapping[str, str] | None = None,
) -> LaunchResult:
    """Run ``command`` through ``launcher`` in ``environment``, appending its output to ``log``.

    ``host_environment`` (default: this process's) is what the launcher program starts from.
    The unit's private directories are created first; the log gets one header line per run
    (host and command), then the command's stdout and stderr, as legacypipe's wrappers append.
    """
    launch = launcher.launch(command, environment)
    env = launch.process_environment(os.environ if host_environment is None else host_environment)
    program = launch.argv[0]
    if shutil.which(program, path=env.get("PATH")) is None:
        raise MissingDependencyError("executable", program)
    environment.prepare()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        shown = shlex.join(launch.argv).replace("\n", "\\n")  # one line, however long
        out.write(f"--- {launcher.name} on {socket.gethostname()}: {shown}\n")
        out.flush()
        try:
            done = subprocess.run(
                launch.argv, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
            )
        except OSError as err:  # found on PATH, yet not executable (permissions, bad ELF)
            raise MissingDependencyError("executable", program, reason=str(err)) from err
    return LaunchResult(exit_code=done.returncode, log=log)
