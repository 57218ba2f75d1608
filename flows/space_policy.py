"""Units that found their file system full: wait for space, then resubmit, or record them.

A unit whose write was refused for want of space (ENOSPC, EDQUOT: ``UnitResult.no_space``, the
file it was writing) is class ``infra``, but resubmitting it at once would only fill the disk
again.  After the round of batches it failed in, the runner waits ``space_backoff`` (doubled at
each next wait, ``space_backoffs`` waits), checking the free space of that file's file system
(``os.statvfs``) after each: once it has ``space_min_free_mb`` free the unit is resubmitted
(still within ``max_attempts`` starts); still full after the last wait, it is a recorded
``infra`` failure whose message names the path, the free space and the fix.  Every wait and
every resubmission is a WARNING line (the console and the run's log); the resubmitted start is
an infrastructure retry in the ledger (``lsdr status``: ``INFRA RETRY …``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from lsdr.infra.ledger import Ledger
from lsdr.infra.settings import Settings
from lsdr.survey.core.fileio import free_bytes
from lsdr.tasks.unit import Unit, UnitResult

log = logging.getLogger("lsdr.flows")

MB = 1 << 20


def mount_point(path: str | Path) -> Path:
    """The mount point of the file system holding ``path`` (its nearest existing parent's)."""
    where = Path(os.path.abspath(path))
    while not where.exists() and where != where.parent:
        where = where.parent
    while not os.path.ismount(where):
        where = where.parent
    return where


def free_mb(path: str | Path) -> float:
    """MB free to an unprivileged user on ``path``'s file system (``df``'s *Available*)."""
    return free_bytes(Path(path)) / MB


def _seconds(duration: str) -> float:
    from dask.utils import parse_timedelta

    return float(parse_timedelta(duration))


def wait_for_space(
    phase: str,
    short: Sequence[tuple[Unit, UnitResult]],
    settings: Settings,
    ledger: Ledger,
    starts: Callable[[str], int],
) -> tuple[list[Unit], list[UnitResult]]:
    """Back off, then the units to resubmit (their file system has room) and the failures.

    ``short``: the units whose result says their file system was full, with that result;
    ``starts(key)``: the unit's starts so far (the ledger's).  A unit started ``max_attempts``
    times already is not waited for.  The failures are recorded in the ledger here, each with
    a message naming the path, the free space and the fix.
    """
    waiting: list[tuple[Unit, UnitResult]] = []
    given_up: list[UnitResult] = []
    for unit, r in short:
        if starts(r.key) >= settings.max_attempts:
            given_up.append(_failure(r, settings, f"after {starts(r.key)} starts"))
        else:
            waiting.append((unit, r))
    again: list[Unit] = []
    delay, waited = _seconds(settings.space_backoff), 0.0
    for n in range(1, settings.space_backoffs + 1):
        if not waiting:
            break
        for mount, group in _by_mount(waiting).items():
            log.warning(
                "%s: %s full (%.1f MB free, below space_min_free_mb %d) for %s: "
                "waiting %s before resubmitting (back-off %d of %d)",
                phase,
                mount,
                free_mb(mount),
                settings.space_min_free_mb,
                _keys(group),
                _duration(delay),
                n,
                settings.space_backoffs,
            )
        time.sleep(delay)
        waited += delay
        delay *= 2
        still: list[tuple[Unit, UnitResult]] = []
        for mount, group in _by_mount(waiting).items():
            free = free_mb(mount)
            if free >= settings.space_min_free_mb:
                log.warning(
                    "%s: %s has %.1f MB free again: resubmitting %s",
                    phase,
                    mount,
                    free,
                    _keys(group),
                )
                again.extend(unit for unit, _ in group)
            else:
                still.extend(group)
        waiting = still
    given_up.extend(_failure(r, settings, f"after waiting {_duration(waited)}") for _, r in waiting)
    if given_up:
        ledger.finish(phase, [r.ledger_finish() for r in given_up])
    return again, given_up


def _failure(r: UnitResult, settings: Settings, when: str) -> UnitResult:
    """The final result of a unit whose file system stayed full: path, free space, the fix."""
    path = r.no_space or "."
    mount = mount_point(path)
    message = (
        f"no space left on device writing {path}: {mount} has {free_mb(mount):.1f} MB free "
        f"{when} (space_min_free_mb {settings.space_min_free_mb}): free space on {mount} or "
        "move the release to a larger file system, then run the phase again"
    )
    return replace(r, message=message)


def _by_mount(
    units: Sequence[tuple[Unit, UnitResult]],
) -> dict[Path, list[tuple[Unit, UnitResult]]]:
    out: dict[Path, list[tuple[Unit, UnitResult]]] = {}
    for unit, r in units:
        out.setdefault(mount_point(r.no_space or "."), []).append((unit, r))
    return out


def _keys(group: Sequence[tuple[Unit, UnitResult]], most: int = 5) -> str:
    keys = [u.key for u, _ in group]
    more = f" and {len(keys) - most} more" if len(keys) > most else ""
    return ", ".join(keys[:most]) + more


def _duration(seconds: float) -> str:
    """``1m``, ``2m30s``, ``0.2s``: a wait as the settings give it."""
    if seconds < 60:
        return f"{seconds:g}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s" if rest else f"{minutes}m"
