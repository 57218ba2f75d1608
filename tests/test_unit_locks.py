"""Unit locks: two runners of one unit never run it at once, and the second finds it done.

Two runners are two threads here, each opening the lock file itself, as two Dask workers (or
the threads of one) do; a holder in another process is killed to show that the kernel lets go
of its lock.  The unit function appends each of its executions (start, end) to a file of its
own, so overlaps are seen from outside the lock's own records too.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lsdr.infra.ledger import Ledger
from lsdr.survey.core.fileio import write_text_atomic
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.batch import run_batch_now
from lsdr.tasks.locks import current_holder, lock_history, lock_path, unit_locks
from lsdr.tasks.sidecars import FORCED_RERUN, read_sidecar, sidecar_path
from lsdr.tasks.unit import FORCE, Unit, UnitOutput, UnitResult

ENGINE = "probe-1"


def slow_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Work ``seconds``, write the output, and append this execution's (start, end)."""
    start = time.time()
    time.sleep(float(unit.option("seconds", 1.0)))
    out = write_text_atomic(layout.root / "out" / f"{unit.key}.txt", unit.key)
    with (layout.root / "executions.txt").open("a") as log:
        log.write(f"{unit.key} {start} {time.time()}\n")
    return UnitOutput((out,), {})


def executions(root: Path) -> list[tuple[str, float, float]]:
    """Every execution of :func:`slow_unit` recorded under ``root``: (key, start, end)."""
    path = root / "executions.txt"
    lines = path.read_text().split("\n") if path.exists() else []
    return [(k, float(a), float(b)) for k, a, b in (line.split() for line in lines if line)]


def overlapping(intervals: list[tuple[float, float]]) -> bool:
    """Whether any two of the intervals overlap in time."""
    ordered = sorted(intervals)
    return any(b[0] < a[1] for a, b in itertools.pairwise(ordered))


@pytest.fixture
def release(tmp_path: Path) -> tuple[ReleaseLayout, str]:
    """An empty release and its ledger's URL."""
    root = tmp_path / "release"
    (root / "inputs").mkdir(parents=True)
    (root / "inputs" / "a.dat").write_text("a")
    url = f"sqlite:///{root / 'state' / 'ledger.sqlite'}"
    Ledger(url).plan("probe", ["a"])  # made first: two runners would race to create it
    return ReleaseLayout(root), url


def unit(layout: ReleaseLayout, seconds: float = 1.5, force: bool = False) -> Unit:
    """The probe unit ``a`` reading ``inputs/a.dat``."""
    made = Unit("probe", "a", (str(layout.root / "inputs" / "a.dat"),), (("seconds", seconds),))
    return made.with_flag(FORCE, True) if force else made


def run_together(layout: ReleaseLayout, url: str, units: list[Unit]) -> list[list[UnitResult]]:
    """Run each unit list in its own thread at once; their results, and who waited for whom."""
    results: list[list[UnitResult]] = [[] for _ in units]
    waits: list[str] = []

    def runner(i: int) -> None:
        results[i] = run_batch_now(
            slow_unit, [units[i]], str(layout.root), url, ENGINE,
            on_wait=lambda u, holder: waits.append(holder),
        )  # fmt: skip

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(len(units))]
    for t in threads:
        t.start()
        time.sleep(0.2)  # the first holds the lock before the second asks
    for t in threads:
        t.join(timeout=60)
    assert waits and all(f"pid {os.getpid()}" in w for w in waits), waits
    return results


def test_the_second_runner_waits_then_finds_the_unit_done(
    release: tuple[ReleaseLayout, str],
) -> None:
    """One execution; the other runner waited for its lock, then found it cached."""
    layout, url = release
    first, second = run_together(layout, url, [unit(layout), unit(layout)])
    assert [r.state for r in first + second] == ["done", "cached"]
    assert [k for k, _, _ in executions(layout.root)] == ["a"]
    row = Ledger(url).get("probe", "a")
    assert row is not None and row.state == "done" and row.attempts == 1
    assert Ledger(url).infra_retries() == []  # a unit being run elsewhere is not a lost start
    history = lock_history(lock_path(layout, "probe", "a"))
    assert [h["event"] for h in history] == ["acquired", "released"] * 2
    assert current_holder(lock_path(layout, "probe", "a")) is None


def test_forced_runners_run_the_unit_one_after_the_other(
    release: tuple[ReleaseLayout, str],
) -> None:
    """Forced, both run it (it was done), never at the same time; each run is a forced rerun."""
    layout, url = release
    assert run_batch_now(slow_unit, [unit(layout)], str(layout.root), url, ENGINE)
    first, second = run_together(layout, url, [unit(layout, force=True)] * 2)
    assert [r.state for r in first + second] == ["done", "done"]
    assert [r.message for r in first + second] == [FORCED_RERUN] * 2
    ran = executions(layout.root)
    assert len(ran) == 3 and not overlapping([(a, b) for _, a, b in ran])
    sidecar = read_sidecar(sidecar_path(layout, "probe", "a"))
    assert sidecar is not None and sidecar["forced"] is True
    assert sidecar["started"] <= sidecar["finished"]
    row = Ledger(url).get("probe", "a")
    assert row is not None and row.attempts == 3 and row.message == FORCED_RERUN
    history = lock_history(lock_path(layout, "probe", "a"))
    held = [(a["time"], b["time"]) for a, b in zip(history[::2], history[1::2], strict=True)]
    assert len(held) == 3 and not overlapping(held)


def test_without_the_lock_the_same_runners_overlap(release: tuple[ReleaseLayout, str]) -> None:
    """The check above can fail: the same two forced runs with the lock taken away overlap."""
    from lsdr.tasks import batch

    layout, url = release

    class NoLock:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def __enter__(self) -> set[str]:
            return set()

        def __exit__(self, *exc: object) -> None:
            return None

    saved = batch.unit_locks
    batch.unit_locks = NoLock  # type: ignore[assignment]
    try:
        threads = [
            threading.Thread(
                target=run_batch_now,
                args=(slow_unit, [unit(layout, force=True)], str(layout.root), url, ENGINE),
            )
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        batch.unit_locks = saved
    assert overlapping([(a, b) for _, a, b in executions(layout.root)])


HOLDER = """
import sys, time
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.locks import unit_locks
from lsdr.tasks.unit import Unit
with unit_locks(ReleaseLayout(sys.argv[1]), [Unit("probe", "a")]):
    print("held", flush=True)
    time.sleep(300)
"""


def test_a_lock_whose_holder_died_is_free_and_names_its_last_holder(
    release: tuple[ReleaseLayout, str],
) -> None:
    """SIGKILL the holder: the kernel lets go of its lock; the file still says who held it."""
    layout, _ = release
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(layout.root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        path = lock_path(layout, "probe", "a")
        named = current_holder(path)
        assert named is not None and named.pid == holder.pid
        assert f"pid {holder.pid}" in named.describe()
    finally:
        holder.kill()
        holder.wait(timeout=30)
    taken = threading.Event()

    def take() -> None:
        with unit_locks(layout, [Unit("probe", "a")]) as waited:
            assert waited == set()
            taken.set()

    thread = threading.Thread(target=take)
    thread.start()
    thread.join(timeout=30)
    assert taken.is_set()
    last = json.loads(path.read_text().splitlines()[-1])
    assert last["event"] == "released" and last["pid"] != holder.pid
