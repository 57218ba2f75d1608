"""How a real runbrick ended, judged by what it wrote and what it logged, not by its exit status.

legacypipe's ``main`` exits 0 on success, on a brick with nothing to do (``NothingToDoError``:
no CCDs, no sources; no outputs) and on SIGUSR1 (checkpoint written, no catalogue); −1 (255) on
``RunbrickError`` (an unknown brick, a pool worker that died); 1 on any other exception.  So a
brick is done only when a catalogue written by *this* run exists and reads, and every file its
``brick-<brick>.sha256sum`` lists exists; each other ending gets its failure class from the log.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lsdr.infra.launchers.runner import LaunchResult
from lsdr.survey.core.errors import FailureClass
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.engines.base import Outcome, UnitOutput

NOTHING_TO_DO = (
    "No CCDs touching brick",
    "No photometric CCDs touching brick",
    "No sources passed significance tests",
)
"""The messages of runbrick's ``NothingToDoError``s: a brick with no data, not a failure."""
OUT_OF_MEMORY = ("memoryerror", "failed to map segment", "cannot allocate memory", "(oom?)")
"""How an out-of-memory death reads in a log (lower case)."""
INTERRUPTING_SIGNALS = {signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
"""Signals from outside (the OOM killer, scancel, a lost node): the unit is rerun elsewhere."""
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)(:.*)?$")
_KEPT = re.compile(r"Keeping (?P<kept>\d+) of (?P<read>\d+) checkpointed results")
_SOURCES = re.compile(r"Sources detected: (?P<n>\d+) in (?P<blobs>\d+) blobs")


def judge_runbrick(
    layout: ReleaseLayout,
    brick: str,
    result: LaunchResult,
    log_start: int,
    started: float,
    command: Mapping[str, Any],
    *,
    skip: bool = False,
) -> UnitOutput:
    """The unit output of one runbrick run: done, no data, or failed with its class.

    ``log_start`` is where this run's part of the log begins; ``started`` (epoch seconds) is
    when it started, so a catalogue left by an earlier run never counts as this run's.
    ``skip``: runbrick was given ``--skip`` and may keep an earlier catalogue.
    """
    text = _read_from(result.log, log_start)
    summary: dict[str, Any] = {"command": dict(command)}
    kept = _KEPT.findall(text)
    if kept:
        summary["checkpoint_blobs_kept"] = int(kept[-1][0])
    detected = _SOURCES.search(text)
    if detected:
        summary["sources_detected"] = int(detected["n"])
        summary["blobs"] = int(detected["blobs"])
    code = result.exit_code
    where = f"(log: {result.log})"
    products = _products(layout, brick, started, skip) if code == 0 else None
    if products is not None:
        return UnitOutput(products, {"rows": _rows(layout.tractor(brick)), **summary})
    if result.timed_out:
        return _failed(
            FailureClass.TIMEOUT,
            f"runbrick {brick}: fit budget spent; it was told to write its checkpoint and stop "
            f"(exit {code}), a rerun resumes from it {where}",
            summary,
        )
    if code == 0:
        if "SIGUSR1 was received" in text:
            return _failed(
                FailureClass.TIMEOUT,
                f"runbrick {brick} received SIGUSR1 (the batch system's warning before its "
                f"time limit): its checkpoint is written, a rerun resumes from it {where}",
                summary,
            )
        reason = next((m for m in NOTHING_TO_DO if m in text), None)
        if reason is not None:
            return UnitOutput((), {"reason": reason, **summary}, Outcome.NO_DATA)
        return _failed(
            FailureClass.SCIENCE,
            f"runbrick {brick} exited 0 without writing a readable {layout.tractor(brick)} {where}",
            summary,
        )
    failure, why = classify_exit(code, text)
    return _failed(failure, f"runbrick {brick} {why} {where}", summary)


def classify_exit(code: int, text: str) -> tuple[FailureClass, str]:
    """The failure class of a non-zero exit, and what happened in a few words.

    A signal (negative code, or 128 + N from a shell or container launcher) from outside is
    ``infra`` (rerun, resuming from the checkpoint); a crash signal is ``science``.  Otherwise
    the log's last exception decides: out of memory → ``oom``; a missing module →
    ``environment``; a command-line error or an unknown brick → ``usage``; anything else →
    ``science``.
    """
    number = -code if code < 0 and code != -1 else code - 128 if 128 < code < 160 else None
    if number is not None:
        name = _signal_name(number)
        if number in INTERRUPTING_SIGNALS:
            return FailureClass.INFRA, (
                f"was killed by {name} (the OOM killer, a cancelled job or a lost node)"
            )
        return FailureClass.SCIENCE, f"crashed with {name}"
    exception = last_exception(text)
    lower = text.lower()
    if any(mark in lower for mark in OUT_OF_MEMORY):
        return FailureClass.OOM, f"ran out of memory: {exception or 'see its log'}"
    if exception and exception.split(":")[0].rsplit(".", 1)[-1] in (
        "ModuleNotFoundError",
        "ImportError",
    ):
        return FailureClass.ENVIRONMENT, f"cannot import what it needs: {exception}"
    usage = _usage_error(text)
    if code == 2 and usage:
        return FailureClass.USAGE, f"refused its command line: {usage}"
    if "No such brick" in text:
        return FailureClass.USAGE, "was given a brick not in the survey-bricks table"
    shown = 255 if code == -1 else code
    return FailureClass.SCIENCE, f"exited {shown}: {exception or 'no exception in its log'}"


def last_exception(text: str) -> str | None:
    """The last line of the log's last traceback (``ValueError: …``), or None."""
    found: str | None = None
    in_traceback = False
    for line in text.splitlines():
        if line.startswith("Traceback (most recent call last):"):
            in_traceback = True
            continue
        if in_traceback and _EXCEPTION.match(line):
            found = line.strip()
            in_traceback = False
    return found


def _usage_error(text: str) -> str | None:
    """argparse's ``<prog>: error: …`` line, or None."""
    for line in reversed(text.splitlines()):
        if ": error: " in line:
            return line.split(": error: ", 1)[1].strip()
    return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _products(
    layout: ReleaseLayout, brick: str, started: float, skip: bool
) -> tuple[Path, ...] | None:
    """The products of this run (its checksum file's list), or None unless its catalogue reads."""
    from lsdr.survey.runbrick.stages import tractor_reads

    catalogue = layout.tractor(brick)
    if not tractor_reads(catalogue):
        return None
    if not skip and catalogue.stat().st_mtime < started - 1.0:
        return None
    sums = layout.brick_checksums(brick)
    listed: list[Path] = []
    if sums.exists():
        for line in sums.read_text().splitlines():
            _, _, name = line.partition(" ")
            if name:
                listed.append(layout.root / name.lstrip("*"))
    missing = [p for p in listed if not p.exists()]
    if missing:
        return None
    return tuple(dict.fromkeys([catalogue, *listed, *([sums] if sums.exists() else [])]))


def _rows(path: Path) -> int:
    import fitsio

    with fitsio.FITS(str(path)) as f:
        return int(f[1].get_nrows())


def _read_from(log: Path, start: int) -> str:
    try:
        with log.open("rb") as f:
            f.seek(start)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _failed(failure: FailureClass, message: str, summary: Mapping[str, Any]) -> UnitOutput:
    return UnitOutput(
        (), dict(summary), outcome=Outcome.FAILED, failure_class=failure, message=message
    )
