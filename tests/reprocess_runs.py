"""Reading what reprocess runs did: the cheapest bricks to redo, and the unit locks' history."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path


def cheapest_bricks(root: Path, n: int) -> list[str]:
    """The ``n`` bricks whose tractor unit took least time in the demo's run."""
    with sqlite3.connect(root / "state" / "ledger.sqlite") as db:
        rows = db.execute("SELECT key FROM units WHERE phase = 'tractor' ORDER BY wall_s")
        return [key for (key,) in rows][:n]


def lock_holds(root: Path, since: float) -> dict[tuple[str, str], list[tuple[float, float, str]]]:
    """Per unit, each time its lock was held since ``since``: (acquired, released, flow run)."""
    holds: dict[tuple[str, str], list[tuple[float, float, str]]] = {}
    for path in (root / "state" / "locks").glob("*/*.lock"):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        records = [r for r in records if r["time"] >= since]
        for taken, freed in zip(records[::2], records[1::2], strict=True):
            assert (taken["event"], freed["event"]) == ("acquired", "released"), path
            assert (taken["pid"], taken["flow_run"]) == (freed["pid"], freed["flow_run"])
            unit = (taken["phase"], taken["key"])
            holds.setdefault(unit, []).append((taken["time"], freed["time"], taken["flow_run"]))
    return holds
