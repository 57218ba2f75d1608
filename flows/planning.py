"""What a phase plans from: upstream lists and failures, and what it leaves out.

A downstream phase leaves out the keys whose upstream unit last failed (naming them in one
WARNING line and in its summary), reads its upstream list files (image list, brick list) without
ever raising on a bad one, and picks the bricks a post-tractor phase works on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from lsdr.flows.report import left_out_line
from lsdr.flows.settings import ledger_for
from lsdr.infra.settings import Settings
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.sidecars import last_failure, sidecar_path
from lsdr.tasks.unit import Unit

log = logging.getLogger("lsdr.flows")


def upstream_failures(settings: Settings, phase: str, keys: Iterable[str]) -> dict[str, str]:
    """The keys whose unit of ``phase`` last failed, each with ``"<phase> failed: <reason>"``.

    From the units' sidecars, and from the ledger for a unit given up after its worker was lost
    (it has a failed ledger row but no failed sidecar).  A downstream planner leaves these keys
    out instead of reading their (missing, stale or bad) products.
    """
    layout = ReleaseLayout(settings.release_dir)
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return {}
    in_ledger = {f.key: f.message for f in ledger_for(settings).failed(phase)}
    out: dict[str, str] = {}
    for key in wanted:
        message = last_failure(layout, phase, key) or in_ledger.get(key)
        if message is not None:
            out[key] = f"{phase} failed: {message}"
    return out


LEFT_OUT_LOGGED = 20
"""Most left-out units a warning line lists (the phase summary lists them all)."""


def leave_out(phase: str, what: str, reasons: Mapping[str, str]) -> list[list[str]]:
    """Log the units a phase leaves out (one WARNING line) and return them for its summary."""
    items = [[key, reason] for key, reason in reasons.items()]
    if items:
        log.warning(left_out_line(phase, what, items, limit=LEFT_OUT_LOGGED))
    return items


def read_planned_list(
    phase: str, path: Path, read: Callable[[], list[str]], settings: Settings | None = None
) -> tuple[list[str], list[Unit]]:
    """Names from an upstream list file (image list, brick list), never raising on a bad one.

    An unreadable or malformed list becomes one failed unit of ``phase``, keyed by the file's
    name, with the reader's message (which names the file): (names, []) or ([], [that unit]).
    Once the list reads again, that failed unit is forgotten (its sidecar and ledger row go:
    it stood for the file, not for work to redo), given the run's ``settings``.
    """
    from lsdr.survey.core.errors import InputFileError

    try:
        names = read()
    except InputFileError as err:
        return [], [Unit(phase, path.name, (str(path),)).unplannable(err)]
    layout = ReleaseLayout(settings.release_dir) if settings is not None else None
    if settings is not None and layout is not None and last_failure(layout, phase, path.name):
        sidecar_path(layout, phase, path.name).unlink(missing_ok=True)
        ledger_for(settings).forget(phase, [path.name])
        log.info("%s: %s reads again; its failed unit is cleared", phase, path)
    return names, []


def release_bricks(
    settings: Settings, bricks: Sequence[str] | None, phase: str
) -> tuple[list[str], list[list[str]]]:
    """The bricks a post-tractor phase works on (given, or the brick list's), and those left out.

    Only bricks with a tractor catalogue: a brick with no CCDs has none, nothing to summarise.
    A brick whose tractor unit last failed is left out even when an older catalogue is there,
    and so is everything when the brick list cannot be read; the phase logs what it left out.
    """
    from lsdr.survey.core.errors import InputFileError
    from lsdr.survey.core.layout import checked_brick
    from lsdr.survey.pretractor.bricklist import read_brick_list

    layout = ReleaseLayout(settings.release_dir)
    if bricks:
        names = [checked_brick(b) for b in bricks]
    else:
        try:
            names = read_brick_list(layout)
        except InputFileError as err:
            return [], leave_out(phase, "brick list", {layout.brick_list.name: str(err)})
    failed = upstream_failures(settings, "tractor", names)
    left = leave_out(phase, "brick", failed)
    return [b for b in names if b not in failed and layout.tractor(b).exists()], left
