"""Whether a process is alive, and stopping one: for the ledger's ``recover``, servers, workers."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""A terminal's Ctrl-C and SLURM's (or ``kill``'s) polite stop: what interrupts a run."""


def ignore_stop_signals() -> None:
    """Make SIGINT and SIGTERM do nothing in this process (call it from its main thread).

    A handler that does nothing rather than ``SIG_IGN``: the commands this process starts get
    the default actions back (an ignored signal would stay ignored in them).
    """
    for number in STOP_SIGNALS:
        signal.signal(number, _ignore)


def _ignore(_signum: int, _frame: object) -> None:
    """A signal handler that does nothing."""


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live process on this host; a zombie (exited, unreaped) is dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (not Linux) or the process just went: kill(0) answered
    return state != "Z"


def alive_reaping(pid: int) -> bool:
    """True if ``pid`` is a live process; a zombie counts as dead (and is reaped if ours)."""
    if reap_child(pid):
        return False
    if pid_alive(pid):
        return True
    # Gone, or a zombie whose main thread has exited: a child of ours is reaped once its other
    # threads are gone too, so that nothing is left of it when this returns.
    deadline = time.monotonic() + 5.0
    while not reap_child(pid) and is_child(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return False


def is_child(pid: int) -> bool:
    """True if ``pid`` is (still) an unreaped child of this process."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return True


def reap_child(pid: int) -> bool:
    """Reap ``pid`` if it is an exited child of this process; True if it was."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid


def terminate_group(pid: int, grace: float) -> None:
    """SIGTERM the process group of ``pid``, wait up to ``grace`` seconds, then SIGKILL the rest.

    lsdr starts its servers and workers in a session of their own, so the pid is the process
    group id and the group holds nothing but the process and its children.
    """
    try:
        leader = os.getpgid(pid) == pid
    except ProcessLookupError:
        return

    def send(sig: int) -> None:
        try:
            if leader:
                os.killpg(pid, sig)
            else:  # not a group leader: signal the process alone
                os.kill(pid, sig)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive_reaping(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    send(signal.SIGKILL)  # the leader if it hung, and any child it left behind
    deadline = time.monotonic() + 5.0
    while alive_reaping(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def start_detached(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path, banner: str
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``argv`` in a session of its own, its output appended to ``log`` after ``banner``.

    The pid is then its process group's (what :func:`terminate_group` stops).  Returns the
    process and the offset in ``log`` where this start's output begins (for error tails).
    """
    with log.open("ab") as stream:
        offset = stream.tell()
        stream.write(f"\n=== lsdr: {banner} ===\n".encode())
        stream.flush()
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=stream,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    return process, offset
