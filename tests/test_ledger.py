"""The unit ledger on SQLite and on a real PostgreSQL: planning, starts, ends, repairs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pg import postgres, postgres_url  # noqa: F401  (fixtures)

from lsdr.infra.ledger import Ledger, UnitFinish, default_url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def ledger(request, tmp_path) -> Ledger:
    """A fresh ledger on SQLite (fast) or PostgreSQL (slow: starts a real server)."""
    if request.param == "sqlite":
        return Ledger(default_url(tmp_path))
    url = request.getfixturevalue("postgres_url")("lsdr_ledger", driver="psycopg")
    led = Ledger(url)
    with led.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM units")
    return led


def test_plan_start_finish_counts(ledger: Ledger):
    """Planned units are pending; a start counts an attempt; an end records state and cost."""
    assert ledger.plan("zeropoints", ["a", "b", "c"]) == 3
    assert ledger.plan("zeropoints", ["a", "b", "c", "d"]) == 1
    ledger.start("zeropoints", ["a", "b"], threads=2)
    [pc] = ledger.counts("zeropoints")
    assert pc.counts == {"pending": 2, "running": 2}
    ledger.finish(
        "zeropoints",
        [
            UnitFinish("a", "done", wall_s=1.5, peak_mem_mb=300.0, outputs=("x.fits",)),
            UnitFinish("b", "failed", failure_class="science", message="bad file\nmore"),
        ],
    )
    [pc] = ledger.counts()
    assert pc.counts == {"pending": 2, "done": 1, "failed": 1} and pc.total == 4
    [failed] = ledger.failed()
    assert (failed.key, failed.failure_class, failed.message, failed.attempts) == (
        "b",
        "science",
        "bad file",
        1,
    )
    row = ledger.get("zeropoints", "a")
    assert row is not None and row.attempts == 1 and row.wall_s == 1.5 and row.threads == 2


def test_retry_requeues_failed_units_only(ledger: Ledger):
    """retry turns failed units (optionally of one class) back into pending ones."""
    ledger.plan("merge", ["x", "y", "z"])
    ledger.start("merge", ["x", "y", "z"])
    ledger.finish(
        "merge",
        [
            UnitFinish("x", "failed", failure_class="science", message="m"),
            UnitFinish("y", "failed", failure_class="oom", message="m"),
            UnitFinish("z", "done"),
        ],
    )
    assert ledger.retry("merge", failure_class="oom") == 1
    assert ledger.retry("merge") == 1
    [pc] = ledger.counts("merge")
    assert pc.counts == {"pending": 2, "done": 1}


def test_recover_only_units_whose_worker_is_dead(ledger: Ledger):
    """recover re-queues a unit whose worker pid is gone, never one whose worker lives."""
    ledger.plan("zeropoints", ["alive", "dead"])
    ledger.start("zeropoints", ["alive"])  # this process: alive
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from lsdr.infra.ledger import Ledger; "
            "Ledger(sys.argv[1]).start('zeropoints', ['dead'])",
            ledger.url,
        ],
        check=True,
        env=os.environ,
    )
    assert child.returncode == 0
    assert ledger.recover() == ["zeropoints:dead"]
    assert ledger.get("zeropoints", "alive").state == "running"
    assert ledger.get("zeropoints", "dead").state == "pending"
    assert ledger.recover() == []
