"""Timing ``lsdr`` commands and counting the units they started, from the ledger (bench/)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from lsdr.survey.core.layout import ReleaseLayout


def lsdr(*args: str) -> float:
    """Run one ``lsdr`` command; its wall time (it must succeed)."""
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "lsdr", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(
            f"lsdr {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return time.perf_counter() - t0


def attempts(root: Path) -> dict[tuple[str, str], int]:
    """Starts of every unit, from the ledger."""
    with sqlite3.connect(ReleaseLayout(root).ledger_db) as db:
        return {(p, k): a for p, k, a in db.execute("SELECT phase, key, attempts FROM units")}


def started_by_phase(
    before: dict[tuple[str, str], int], after: dict[tuple[str, str], int]
) -> Counter[str]:
    """Per phase, the units started between two ledger readings (in ledger order)."""
    return Counter(unit[0] for unit, n in after.items() if n > before.get(unit, 0))


def as_text(counts: Counter[str]) -> str:
    """``phase:count`` pairs, or ``-`` when nothing started."""
    return " ".join(f"{phase}:{n}" for phase, n in counts.items()) or "-"
