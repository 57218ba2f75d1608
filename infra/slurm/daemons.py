"""Starting a daemon that forks itself and finding it by its PID file (SLURM's and slurmdbd)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from lsdr.infra.processes import pid_alive
from lsdr.survey.core.errors import UsageError


def running_pid(pid_file: Path) -> int | None:
    """The PID a daemon's PID file names when that process is alive, else None."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def start_daemon(name: str, env: Mapping[str, str], log: Path) -> None:
    """Run ``name`` (it forks and returns); a non-zero exit is one line naming its log."""
    program = shutil.which(name, path=env.get("PATH")) or f"/usr/sbin/{name}"
    done = subprocess.run(
        [program], env=dict(env), capture_output=True, text=True, check=False, timeout=60
    )
    if done.returncode != 0:
        raise UsageError(
            f"{name} did not start (exit {done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[:300]}; see {log}"
        )


def wait_for_pid(name: str, pid_file: Path, log: Path, timeout: float) -> int:
    """The started daemon's PID, once its PID file names a live process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = running_pid(pid_file)
        if pid is not None:
            return pid
        time.sleep(0.2)
    raise UsageError(f"{name} started but wrote no PID file; see {log}")
