"""A unit past its phase's timeout really stopped: the unit runs in a child process it can kill.

A Dask worker runs units on threads, and a signal reaches only a process's main thread, so a
hung unit (a C loop, a sleep, a blocked read) cannot be interrupted where it runs.  With a
timeout, the worker thread forks a child that runs the unit function in *its* main thread, in
a process group of its own, and waits for its result up to the deadline.  Past it, the group
gets SIGTERM: in the child that raises :class:`UnitTimeoutError` where the unit is, so ``finally``
blocks run (``atomic_path`` removes its temporary, the lite fitblobs writes its checkpoint);
after :data:`GRACE_S` seconds the group is SIGKILLed (a unit stuck in C ignores SIGTERM), and
the temporaries the child had open are removed from the list it kept.  Either way the unit is
class ``timeout``, with a message naming the unit, the timeout and the setting to raise.

``os.fork`` rather than ``multiprocessing``: a Dask worker is a daemonic process, and
multiprocessing refuses to start children there (fork, forkserver and spawn alike); a fork
costs a few milliseconds, exec'ing a fresh interpreter ~0.6 s a unit (``docs/faults.md``).  No
Prefect here.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO

from lsdr.survey.core import fileio
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.failures import TIMEOUT, classify, one_line
from lsdr.tasks.sandbox import memory_limit, peak_rss_mb
from lsdr.tasks.unit import Unit, UnitOutput

GRACE_S = 10.0
"""Seconds a unit has, after SIGTERM, to unwind (write its checkpoint, remove its temporaries)
before its process group is SIGKILLed."""
PR_SET_PDEATHSIG = 1
"""``prctl`` option: the signal the kernel sends a process when the thread that forked it ends."""


class UnitTimeoutError(TimeoutError):
    """Raised in a unit's child process by SIGTERM at its deadline (class ``timeout``)."""


class UnitFailedError(Exception):
    """A unit's failure as its child process reported it (or as its deadline made it)."""

    def __init__(self, failure_class: str, message: str, trace: str, peak_mem_mb: float) -> None:
        super().__init__(message)
        self.failure_class = failure_class
        self.message = message
        self.trace = trace
        self.peak_mem_mb = peak_mem_mb


def timeout_message(unit: Unit, timeout_s: float, how: str) -> str:
    """The one line of a unit stopped at its timeout: the unit, the timeout, the setting."""
    from lsdr.infra.settings import command_of

    return (
        f"{unit.key}: past the {unit.phase} timeout of {timeout_s:g} s, {how}; raise it with "
        f"'lsdr run {command_of(unit.phase)} --timeout SECONDS' or the setting "
        f"'timeouts: {{{unit.phase}: SECONDS}}'"
    )


def run_unit_function(
    fn: Callable[[ReleaseLayout, Unit], UnitOutput],
    layout: ReleaseLayout,
    unit: Unit,
    *,
    memory_limit_mb: int | None = None,
    timeout_s: float | None = None,
) -> tuple[UnitOutput, float]:
    """Run ``fn`` on the unit; its output and the peak memory (MB) of where it ran.

    Without a timeout it runs here, under the memory limit.  With one it runs in a child
    process (see the module's docstring); a failure there is raised here as
    :class:`UnitFailedError` (its class, one line and traceback), as is the timeout.
    """
    if timeout_s is None:
        with memory_limit(memory_limit_mb):
            return fn(layout, unit), peak_rss_mb()
    return _in_child(fn, layout, unit, memory_limit_mb, timeout_s)


def _in_child(
    fn: Callable[[ReleaseLayout, Unit], UnitOutput],
    layout: ReleaseLayout,
    unit: Unit,
    memory_limit_mb: int | None,
    timeout_s: float,
) -> tuple[UnitOutput, float]:
    """Fork, run the unit in the child, wait for it up to the deadline; kill it past it."""
    read_end, write_end = os.pipe()
    with tempfile.TemporaryFile() as temporaries:
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read_end)
            _child(fn, layout, unit, memory_limit_mb, write_end, temporaries.fileno())
        os.close(write_end)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # as the child does: no race with a kill before it did
        data, stopped = _wait(read_end, pid, time.monotonic() + timeout_s)
        if stopped == "killed":
            _remove_temporaries(temporaries)
    if stopped is not None:
        how = "stopped" if stopped == "stopped" else f"killed after {GRACE_S:g} s more"
        trace = ""
        if data:
            report = pickle.loads(data)
            trace = report[3] if report[0] == "failed" else ""
        raise UnitFailedError(TIMEOUT, timeout_message(unit, timeout_s, how), trace, 0.0)
    if not data:
        raise UnitFailedError(
            "infra", f"{unit.phase} {unit.key}: its process ended without a result", "", 0.0
        )
    report = pickle.loads(data)
    if report[0] == "failed":
        _, failure_class, message, trace, peak = report
        raise UnitFailedError(failure_class, message, trace, peak)
    _, output, peak = report
    return output, peak


def _wait(read_end: int, pid: int, deadline: float) -> tuple[bytes, str | None]:
    """Read the child's report until it ends; past the deadline, stop it, then kill it.

    Returns the report's bytes and None, or how the child was ended (``stopped``: it unwound
    on SIGTERM; ``killed``: SIGKILL after the grace).  The child's process group is SIGKILLed
    once it ended whatever the way, so nothing it started outlives it; then it is reaped.
    """
    chunks: list[bytes] = []
    stopped: str | None = None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                if stopped is None:
                    stopped = "stopped"
                    _signal_group(pid, signal.SIGTERM)
                    deadline = time.monotonic() + GRACE_S
                    continue
                stopped = "killed"
                break
            ready, _, _ = select.select([read_end], [], [], left)
            if ready:
                chunk = os.read(read_end, 1 << 16)
                if not chunk:
                    break  # the child (and whatever shared its pipe) ended
                chunks.append(chunk)
    finally:
        os.close(read_end)
        _signal_group(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return b"".join(chunks), stopped


def _signal_group(pid: int, signum: signal.Signals) -> None:
    """Send ``signum`` to the child's process group (nothing when it is gone)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _remove_temporaries(journal: IO[bytes]) -> None:
    """Remove the ``atomic_path`` temporaries a killed child (or its children) listed and left.

    A listed name still there was never renamed into place: a partial write, its writer gone.
    """
    journal.seek(0)
    for line in journal.read().decode(errors="replace").splitlines():
        path = Path(line)
        if path.name.startswith("tmp-"):
            path.unlink(missing_ok=True)


def _child(
    fn: Callable[[ReleaseLayout, Unit], UnitOutput],
    layout: ReleaseLayout,
    unit: Unit,
    memory_limit_mb: int | None,
    write_end: int,
    temporaries: int,
) -> None:
    """The unit in a forked child's main thread; its report written to ``write_end``; exit."""
    status = 0
    try:
        os.setpgid(0, 0)
        _die_with_parent()
        signal.signal(signal.SIGTERM, _timed_out)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's, not the unit's
        fileio.list_temporaries(temporaries)
        try:
            with memory_limit(memory_limit_mb):
                output = fn(layout, unit)
            report: tuple[object, ...] = ("done", output, peak_rss_mb())
        except BaseException as err:
            text = traceback.format_exc()
            report = ("failed", classify(err), one_line(err), text, peak_rss_mb())
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # reported: a late SIGTERM changes nothing
        data = pickle.dumps(report)
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(data)
    except BaseException:
        status = 1
    finally:
        os._exit(status)


def _timed_out(signum: int, frame: FrameType | None) -> None:
    """SIGTERM in a unit's child: its deadline passed."""
    raise UnitTimeoutError("stopped at its timeout (SIGTERM)")


def _die_with_parent() -> None:
    """Have the kernel SIGKILL this child if the worker thread that forked it ends (Linux)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
