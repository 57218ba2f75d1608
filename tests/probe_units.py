"""Unit functions for the orchestration tests: real work on real files, with ways to fail.

Each reads its input file and writes an output whose content depends on it, so a test can
see what was recomputed.  The failure modes are real: a process that sleeps until the test
kills it, an allocation beyond the unit's memory limit, an input file that cannot be read.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np

from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.fileio import write_text_atomic
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.unit import Unit, UnitOutput


def output_of(layout: ReleaseLayout, key: str) -> Path:
    """Where the probe unit ``key`` writes."""
    return layout.root / "probe-out" / f"{key}.txt"


def checksum_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Checksum the unit's input file into its output (a light unit: ~1 ms)."""
    src = Path(unit.inputs[0])
    try:
        data = src.read_bytes()
    except OSError as err:
        raise InputFileError(f"{src}: cannot read ({err.strerror})") from err
    if data.startswith(b"CORRUPT"):
        raise InputFileError(f"{src}: corrupt header; replace the file")
    out = write_text_atomic(output_of(layout, unit.key), hashlib.sha256(data).hexdigest())
    return UnitOutput((out,), {"bytes": len(data)})


def die_once_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """The victim's first start records its worker's pid and sleeps until killed."""
    marker = layout.root / "probe-pids" / f"{unit.key}.pid"
    if unit.key == unit.option("victim") and not marker.exists():
        write_text_atomic(marker, str(os.getpid()))
        time.sleep(120)
    return checksum_unit(layout, unit)


def hungry_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Allocate (and touch) ``mb_per_thread`` MB per thread, like a brick using N threads."""
    mb = int(unit.option("mb_per_thread", 400)) * unit.threads
    block = np.ones(mb * 1024 * 1024 // 8)
    total = float(block.sum())
    out = write_text_atomic(output_of(layout, unit.key), f"{unit.threads} {total}")
    return UnitOutput((out,), {"threads": unit.threads})


def interval_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Sleep ``seconds`` and write when the unit started and ended (to see which overlapped)."""
    start = time.time()
    time.sleep(float(unit.option("seconds", 1.0)))
    out = write_text_atomic(output_of(layout, unit.key), f"{start} {time.time()}")
    return UnitOutput((out,), {})


def resumable_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Work ``seconds`` in half-second steps, saving progress as it goes, resuming from it.

    Like a brick's fitblobs checkpoint: a start after a lost worker goes on from the steps
    saved; the output records how many starts it took and the steps each resumed from.
    """
    steps = int(2 * float(unit.option("seconds", 10.0)))
    progress = layout.root / "probe-progress" / f"{unit.key}.txt"
    lines = progress.read_text().split() if progress.exists() else []
    done = int(lines[0]) if lines else 0
    starts = [*lines[1:], str(done)]
    for step in range(done, steps):
        time.sleep(0.5)
        write_text_atomic(progress, " ".join([str(step + 1), *starts]))
    out = write_text_atomic(output_of(layout, unit.key), f"{steps} steps; resumed at {starts}")
    return UnitOutput((out,), {"starts": len(starts), "resumed_at": [int(s) for s in starts]})
