"""Run a launched command: no shell, its output in the unit's log, its exit code returned.

The exit code is forwarded, not judged: legacypipe exits 0 with no catalogue on a brick with no
data, so whether a unit is done is decided by its outputs (the engine's job).  A launcher or
command that is not installed is the environment's fault, raised as
:class:`~lsdr.survey.core.errors.MissingDependencyError` before anything is started.
"""

from __future__ import annotations

import os
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lsdr.infra.launchers.base import Launcher
from lsdr.infra.launchers.environment import LaunchEnvironment
from lsdr.survey.core.errors import MissingDependencyError


@dataclass(frozen=True)
class Deadline:
    """When to ask a command to stop: ``signal`` after ``seconds``, then SIGKILL after ``grace``.

    runbrick writes its checkpoint and exits 0 on SIGUSR1, so a fit budget is a deadline with
    SIGUSR1 and a grace long enough for the checkpoint to be written.
    """

    seconds: float
    signal: int = signal.SIGTERM
    grace: float = 120.0
    after: str | None = None
    """Start the clock only when this text appears in the command's output (runbrick's
    ``Running stage fitblobs``: its SIGUSR1 handler exists only while it fits blobs)."""


@dataclass(frozen=True)
class LaunchResult:
    """How a launched command ended: its exit code, its log, whether its deadline passed."""

    exit_code: int
    log: Path
    timed_out: bool = False


def run_launched(
    launcher: Launcher,
    command: Sequence[str],
    environment: LaunchEnvironment,
    log: Path,
    host_environment: Mapping[str, str] | None = None,
    *,
    deadline: Deadline | None = None,
    memory_limit_mb: int | None = None,
) -> LaunchResult:
    """Run ``command`` through ``launcher`` in ``environment``, appending its output to ``log``.

    ``host_environment`` (default: this process's) is what the launcher program starts from.
    The unit's private directories are created first; the log gets one header line per run
    (host and command), then the command's stdout and stderr, as legacypipe's wrappers append.
    ``memory_limit_mb`` caps the command's address space (util-linux ``prlimit --as``, so the
    limit is the command's own, not the worker's); ``deadline`` signals it when time is up.
    """
    launch = launcher.launch(command, environment)
    env = launch.process_environment(os.environ if host_environment is None else host_environment)
    argv = list(launch.argv)
    if memory_limit_mb is not None:
        argv = ["prlimit", f"--as={memory_limit_mb * 1024 * 1024}", "--", *argv]
    for program in dict.fromkeys([argv[0], launch.argv[0]]):
        if shutil.which(program, path=env.get("PATH")) is None:
            raise MissingDependencyError("executable", program)
    environment.prepare()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        shown = shlex.join(argv).replace("\n", "\\n")  # one line, however long
        out.write(f"--- {launcher.name} on {socket.gethostname()}: {shown}\n")
        out.flush()
        try:
            process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        except OSError as err:  # found on PATH, yet not executable (permissions, bad ELF)
            raise MissingDependencyError("executable", argv[0], reason=str(err)) from err
        timed_out = _wait(process, deadline, log, out.tell())
    return LaunchResult(exit_code=process.returncode, log=log, timed_out=timed_out)


POLL_S = 0.2
"""How often a command with a deadline is checked (its exit, the marker in its log)."""


def _wait(
    process: subprocess.Popen[bytes], deadline: Deadline | None, log: Path, offset: int
) -> bool:
    """Wait for ``process``; past the deadline, signal it, then kill it after the grace."""
    try:
        if deadline is None:
            process.wait()
            return False
        clock = None if deadline.after else time.monotonic()
        while process.poll() is None:
            if clock is None and deadline.after and _logged(log, offset, deadline.after):
                clock = time.monotonic()
            if clock is not None and time.monotonic() - clock >= deadline.seconds:
                process.send_signal(deadline.signal)
                break
            time.sleep(POLL_S)
        else:
            return False
        try:
            process.wait(timeout=deadline.grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return True
    except BaseException:
        # Interrupted (Ctrl-C, a cancelled task): the command must not outlive its unit.
        process.kill()
        process.wait()
        raise


def _logged(log: Path, offset: int, text: str) -> bool:
    """Whether ``text`` appears in ``log`` after ``offset``."""
    try:
        with log.open("rb") as f:
            f.seek(offset)
            return text.encode() in f.read()
    except OSError:
        return False


def address_space_left_mb() -> int | None:
    """The address-space headroom of this process under its RLIMIT_AS (MB), None when unlimited.

    A unit's memory limit (``tasks/sandbox.py``) is set on the worker as its size plus the
    unit's allowance; a command the unit launches gets that allowance as its own limit.
    """
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    size = 0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                size = int(line.split()[1]) * 1024
    except OSError:
        pass
    return max((soft - size) // (1024 * 1024), 1)
