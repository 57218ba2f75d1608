"""A small real release made in a second, without Prefect: probe units run by lsdr's own runner.

Five probe units (tests/probe_units.py ``checksum_unit``) run through
:func:`lsdr.tasks.batch.run_batch_now`, the runner a worker uses: each writes its output, its
provenance sidecar and its ledger row (``state/ledger.sqlite``) as any unit does.  The last
input starts with ``CORRUPT``, so that unit fails (``science``) and the ledger has a failure.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import probe_units as probe

from lsdr.infra.ledger import Ledger, default_url
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.batch import run_batch_now
from lsdr.tasks.unit import Unit

PHASE = "probe"
ENGINE_VERSION = "probe-1"


def make_small_release(root: Path, n: int = 5) -> list[str]:
    """Run ``n`` probe units in ``root`` (the last one fails); their keys."""
    (root / "inputs").mkdir(parents=True)
    keys = [f"u{i:03d}" for i in range(n)]
    for key in keys:
        (root / "inputs" / f"{key}.dat").write_bytes(key.encode() * 100)
    (root / "inputs" / f"{keys[-1]}.dat").write_bytes(b"CORRUPT")
    layout = ReleaseLayout(root)
    url = default_url(layout.state_dir)
    ledger = Ledger(url)
    ledger.plan(PHASE, keys)
    units = [Unit(PHASE, k, (str(root / "inputs" / f"{k}.dat"),), ()) for k in keys]
    run_batch_now(probe.checksum_unit, units, str(root), url, ENGINE_VERSION)
    ledger.close()
    return keys


def unit_states(root: Path) -> set[tuple[str, str, str]]:
    """The ledger's (phase, key, state) rows, read with sqlite3 itself."""
    db = sqlite3.connect(ReleaseLayout(root).ledger_db)
    try:
        return {(p, k, s) for p, k, s in db.execute("SELECT phase, key, state FROM units")}
    finally:
        db.close()
