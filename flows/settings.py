"""What a flow runs with: its settings, the ledger they name, and the release's lock."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lsdr.infra.ledger import Ledger, default_url
from lsdr.infra.release_lock import (
    LockHolder,
    LockMode,
    ensure_release_lock,
    held_here,
    release_lock,
)
from lsdr.infra.settings import Settings
from lsdr.survey.core.layout import ReleaseLayout

log = logging.getLogger("lsdr.flows")


def settings_for(release_dir: str, overrides: dict[str, Any] | None) -> Settings:
    """A flow's settings: the release's file and environment, then the run's overrides."""
    from pathlib import Path

    from lsdr.infra.settings import load_settings

    return load_settings(Path(release_dir), **(overrides or {}))


def ledger_for(settings: Settings) -> Ledger:
    """The ledger the settings name (default: the release's ``state/ledger.sqlite``)."""
    layout = ReleaseLayout(settings.release_dir)
    return Ledger(settings.ledger_url or default_url(layout.state_dir))


def flow_command() -> str:
    """What a flow run's lock record names: ``flow run release/brave-fox (id)``, or argv."""
    from lsdr.infra.release_lock import command_line

    try:
        from prefect.runtime import flow_run

        run_id, name, flow_name = flow_run.id, flow_run.name, flow_run.flow_name
    except Exception:  # outside Prefect: the process's own command line names it
        return command_line()
    if not run_id:
        return command_line()
    return f"flow run {flow_name}/{name} ({run_id})"


@contextmanager
def writing_release(
    settings: Settings, mode: LockMode = LockMode.EXCLUSIVE
) -> Iterator[LockHolder]:
    """Hold the release's lock while a flow writes it (refused, or waited for: ``lock_wait``).

    Held already in this process (``lsdr run`` took it before running the flow, and checked
    the ledger), it is shared with the holder.  Taken here, the ledger is checked next: a
    damaged one fails the run with the line naming the fix, as the CLI does.  A refusal fails
    the flow run with the lock's one line.
    """
    path = ReleaseLayout(settings.release_dir).release_lock
    taken_here = held_here(path) is None
    with release_lock(
        path,
        str(settings.release_dir),
        mode,
        wait=settings.lock_wait,
        command=flow_command(),
        say=log.warning,
    ) as holder:
        if taken_here:
            readable_ledger(settings)
        yield holder


def readable_ledger(settings: Settings) -> None:
    """Check the settings' ledger reads (if it exists): else the one line naming the fix."""
    from lsdr.infra.ledger import UnreadableLedgerError

    try:
        Ledger.existing(ledger_for(settings).url)
    except UnreadableLedgerError as err:
        raise err.with_fix(settings.release_dir) from None


@contextmanager
def writing_units(settings: Settings) -> Iterator[LockHolder]:
    """The release's lock as this process holds it, else taken exclusive: around a phase's units."""
    path = ReleaseLayout(settings.release_dir).release_lock
    with ensure_release_lock(
        path,
        str(settings.release_dir),
        wait=settings.lock_wait,
        command=flow_command(),
        say=log.warning,
    ) as holder:
        yield holder
