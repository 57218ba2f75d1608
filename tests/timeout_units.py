"""Unit functions that really hang, for the timeout tests: real work, or a loop that never ends.

The victim (option ``victim``) records its process's pid, starts writing its output through
``atomic_path`` (a ``tmp-<pid>-`` file on disk) and never finishes: a pure-Python loop that
only a signal can interrupt, or, for ``stubborn``, a sleep with SIGTERM blocked and a child
process of its own, which only SIGKILL of its process group ends.  The others checksum their
input as ``probe_units.checksum_unit`` does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import probe_units as probe

from lsdr.survey.core.fileio import atomic_path, write_text_atomic
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.unit import Unit, UnitOutput


def pid_file(layout: ReleaseLayout, key: str, what: str = "unit") -> os.PathLike[str]:
    """Where the victim records the pid of its process (``unit``) or of its child (``child``)."""
    return layout.root / "probe-pids" / f"{key}.{what}.pid"


def hang_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """The victim hangs half-way through writing its output; the others checksum their input."""
    if unit.key != unit.option("victim"):
        return probe.checksum_unit(layout, unit)
    write_text_atomic(pid_file(layout, unit.key), str(os.getpid()))
    with atomic_path(probe.output_of(layout, unit.key)) as tmp, open(tmp, "w") as partial:
        partial.write("half of it")
        partial.flush()
        if unit.option("stubborn", False):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            child = subprocess.Popen(["sleep", "1000"])
            write_text_atomic(pid_file(layout, unit.key, "child"), str(child.pid))
            while True:
                time.sleep(1)
        n = 0
        while True:  # pure Python, forever: no sleep to return from
            n += 1
    raise AssertionError("unreachable")
