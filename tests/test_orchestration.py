"""The orchestration core for real: a Prefect server, a Dask LocalCluster, the ledger, sidecars.

The probe units (tests/probe_units.py) do real file work and fail in real ways: a worker
process killed by PID, an allocation beyond a memory limit, an unreadable input.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import cloudpickle
import probe_units as probe
import pytest
from prefect import flow

from lsdr.flows.report import PhaseResult, phase_summary
from lsdr.flows.runner import run_units
from lsdr.flows.settings import ledger_for, settings_for
from lsdr.infra.cluster import task_runner
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.sidecars import iter_sidecars, rebuild_ledger
from lsdr.tasks.unit import Unit

cloudpickle.register_pickle_by_value(probe)

FUNCTIONS = {
    "checksum": probe.checksum_unit,
    "die_once": probe.die_once_unit,
    "hungry": probe.hungry_unit,
}


@flow(name="probe")
def probe_flow(
    release_dir: str,
    function: str,
    keys: list[str],
    threads: int = 1,
    options: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
) -> PhaseResult:
    """Run probe units, one per key, with input ``inputs/<key>.dat``."""
    s = settings_for(release_dir, settings)
    units = [
        Unit(
            "probe",
            key,
            (str(s.release_dir / "inputs" / f"{key}.dat"),),
            tuple(sorted((options or {}).items())),
            threads=threads,
        )
        for key in keys
    ]
    return phase_summary(run_units("probe", FUNCTIONS[function], units, s))


def make_release(root: Path, n: int) -> list[str]:
    """A release directory with ``n`` small input files."""
    (root / "inputs").mkdir(parents=True)
    keys = [f"u{i:05d}" for i in range(n)]
    for key in keys:
        (root / "inputs" / f"{key}.dat").write_bytes(key.encode() * 100)
    return keys


ADDRESS: list[str] = []


@pytest.fixture(autouse=True)
def _cluster(dask_address: str) -> None:
    ADDRESS[:] = [dask_address]


def run(root: Path, function: str, keys: list[str], **kw: Any) -> PhaseResult:
    """Run the probe flow on the session's LocalCluster (two single-threaded workers)."""
    from lsdr.infra.settings import load_settings

    settings = {"n_workers": 2, "batch_size": 4, **kw.pop("settings", {})}
    s = load_settings(root, **settings)
    runner = task_runner(s, ADDRESS[0])
    result: dict[str, Any] = probe_flow.with_options(task_runner=runner)(
        str(root), function, keys, settings=settings, **kw
    )
    return result


def mtimes(root: Path) -> dict[str, int]:
    """Modification times of the probe outputs."""
    return {p.name: p.stat().st_mtime_ns for p in (root / "probe-out").glob("*.txt")}


def test_rerun_recomputes_nothing_and_a_changed_input_only_its_unit(tmp_path):
    """A second run finds every unit done; touching one input reruns exactly that unit."""
    keys = make_release(tmp_path, 10)
    first = run(tmp_path, "checksum", keys)
    assert first.counts.model_dump() == {"done": 10, "cached": 0, "failed": 0}
    before = mtimes(tmp_path)

    second = run(tmp_path, "checksum", keys)
    assert second.counts.model_dump() == {"done": 0, "cached": 10, "failed": 0}
    assert mtimes(tmp_path) == before

    time.sleep(0.01)
    (tmp_path / "inputs" / "u00003.dat").write_bytes(b"changed")
    third = run(tmp_path, "checksum", keys)
    assert third.counts.model_dump() == {"done": 1, "cached": 9, "failed": 0}
    after = mtimes(tmp_path)
    assert [k for k in after if after[k] != before[k]] == ["u00003.txt"]

    ledger = ledger_for(settings_for(str(tmp_path), None))
    rows = {r.key: r for r in ledger.rows("probe")}
    assert all(r.state == "done" for r in rows.values())
    assert rows["u00003"].attempts == 2 and rows["u00000"].attempts == 1


def test_deleted_output_is_remade(tmp_path):
    """A unit whose output disappeared is not done, whatever its sidecar says."""
    keys = make_release(tmp_path, 3)
    run(tmp_path, "checksum", keys)
    probe.output_of(ReleaseLayout(tmp_path), "u00001").unlink()
    again = run(tmp_path, "checksum", keys)
    assert again.counts.model_dump() == {"done": 1, "cached": 2, "failed": 0}


def test_science_failure_is_recorded_others_complete_and_no_blind_retry(tmp_path):
    """An unreadable input fails its unit (science) with the file named; the rest complete."""
    keys = make_release(tmp_path, 6)
    bad = tmp_path / "inputs" / "u00002.dat"
    bad.write_bytes(b"CORRUPT" + bytes(100))
    result = run(tmp_path, "checksum", keys)
    assert result.counts.model_dump() == {"done": 5, "cached": 0, "failed": 1}
    [(key, cls, message)] = result.failed
    assert key == "u00002" and cls == "science" and str(bad) in message

    ledger = ledger_for(settings_for(str(tmp_path), None))
    [failed] = ledger.failed("probe")
    assert failed.key == "u00002" and failed.failure_class == "science"

    # Same inputs: not retried blindly.
    again = run(tmp_path, "checksum", keys)
    assert again.counts.model_dump() == {"done": 0, "cached": 5, "failed": 1}
    assert ledger.get("probe", "u00002").attempts == 1

    # A fixed file (new content, new stamp) runs again by itself.
    bad.write_bytes(b"fixed")
    fixed = run(tmp_path, "checksum", keys)
    assert fixed.counts.model_dump() == {"done": 1, "cached": 5, "failed": 0}


def test_killed_worker_reruns_its_unit_and_the_phase_completes(tmp_path):
    """SIGKILL of the worker running a unit: the unit runs again elsewhere and completes."""
    keys = make_release(tmp_path, 4)
    pid_file = tmp_path / "probe-pids" / "u00001.pid"
    killed: list[int] = []
    finished = threading.Event()

    def killer() -> None:
        # Waits for the victim to start (its pid file) for as long as the run lasts: on a busy
        # machine the cluster and the first units can take minutes to start.
        while not finished.is_set() and not pid_file.exists():
            time.sleep(0.05)
        if pid_file.exists():
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        result = run(
            tmp_path, "die_once", keys, options={"victim": "u00001"}, settings={"batch_size": 1}
        )
    finally:
        finished.set()
    thread.join(5)
    assert killed, "the unit never started"
    assert result.counts.failed == 0
    assert result.counts.done == 4
    row = ledger_for(settings_for(str(tmp_path), None)).get("probe", "u00001")
    assert row is not None and row.state == "done"
    assert row.attempts == 2  # the ledger counts the start Dask made on the new worker
    assert row.pid != killed[0]


def test_out_of_memory_retries_with_fewer_threads(tmp_path):
    """A real MemoryError under the memory limit: retried with half the threads until it fits."""
    keys = make_release(tmp_path, 1)
    result = run(
        tmp_path,
        "hungry",
        keys,
        threads=4,
        options={"mb_per_thread": 500},
        settings={"unit_memory_limit_mb": 900, "batch_size": 1},
    )
    assert result.counts.model_dump() == {"done": 1, "cached": 0, "failed": 0}
    row = ledger_for(settings_for(str(tmp_path), None)).get("probe", "u00000")
    assert row is not None and row.threads == 1 and row.attempts == 3
    out = probe.output_of(ReleaseLayout(tmp_path), "u00000").read_text()
    assert out.startswith("1 ")


def test_out_of_memory_at_one_thread_is_a_recorded_failure(tmp_path):
    """A unit that does not fit even with one thread fails with class oom."""
    keys = make_release(tmp_path, 1)
    result = run(
        tmp_path,
        "hungry",
        keys,
        threads=1,
        options={"mb_per_thread": 2000},
        settings={"unit_memory_limit_mb": 500, "batch_size": 1},
    )
    [(_key, cls, message)] = result.failed
    assert cls == "oom" and "out of memory" in message


def test_ledger_rebuild_from_sidecars(tmp_path):
    """Deleting the ledger loses nothing: rebuild restores every unit's state and reason."""
    keys = make_release(tmp_path, 5)
    (tmp_path / "inputs" / "u00004.dat").write_bytes(b"CORRUPT")
    run(tmp_path, "checksum", keys)
    layout = ReleaseLayout(tmp_path)
    assert len(list(iter_sidecars(layout))) == 5
    ledger_for(settings_for(str(tmp_path), None)).close()
    layout.ledger_db.unlink()
    for extra in layout.state_dir.glob("ledger.sqlite-*"):
        extra.unlink()
    ledger = ledger_for(settings_for(str(tmp_path), None))
    assert ledger.counts() == []
    assert rebuild_ledger(layout, ledger) == {"probe": 5}
    [pc] = ledger.counts()
    assert pc.counts == {"done": 4, "failed": 1}
    assert ledger.failed()[0].key == "u00004"


@pytest.mark.slow
def test_5000_units_every_unit_in_ledger_and_every_task_run_recorded(tmp_path):
    """5,000 units through one flow: 5,000 done in the ledger, every task run on the server."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
    )
    from prefect.client.schemas.objects import StateType

    keys = make_release(tmp_path, 5000)
    result = run(tmp_path, "checksum", keys, settings={"batch_size": 25})
    assert result.counts.model_dump() == {"done": 5000, "cached": 0, "failed": 0}
    ledger = ledger_for(settings_for(str(tmp_path), None))
    [pc] = ledger.counts("probe")
    assert pc.counts == {"done": 5000}

    async def recorded() -> tuple[int, int]:
        async with get_client() as client:
            flows = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["probe"])), limit=200
            )
            mine = [f for f in flows if f.parameters.get("release_dir") == str(tmp_path)]
            assert len(mine) == 1
            runs = FlowRunFilter(id=FlowRunFilterId(any_=[mine[0].id]))
            tasks: list[Any] = []
            while True:
                page = await client.read_task_runs(
                    flow_run_filter=runs, limit=200, offset=len(tasks)
                )
                tasks.extend(page)
                if len(page) < 200:
                    break
            total = len(tasks)
            completed = sum(t.state_type == StateType.COMPLETED for t in tasks)
            return total, completed

    # 5,000 units in batches of 25: 200 task runs.  The deadline only stops the polling for
    # the server's recorder; the verdict is the count.
    deadline = time.monotonic() + 300
    while True:
        n, completed = asyncio.run(recorded())
        if (n == 200 and completed == 200) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert (n, completed) == (200, 200), (
        f"the server holds {n} task runs of the flow ({completed} COMPLETED) after 300 s"
    )


def test_flow_run_has_progress_and_units_artifacts(tmp_path):
    """Each phase leaves a progress artifact (100 % at the end) and tables of its units."""
    from flow_artifacts import flow_run_artifacts

    from lsdr.infra.settings import load_settings

    keys = make_release(tmp_path, 6)
    (tmp_path / "inputs" / "u00001.dat").write_bytes(b"CORRUPT")
    settings = {"n_workers": 2, "batch_size": 4}
    s = load_settings(tmp_path, **settings)
    state = probe_flow.with_options(task_runner=task_runner(s, ADDRESS[0]))(
        str(tmp_path), "checksum", keys, settings=settings, return_state=True
    )
    found = flow_run_artifacts(state.state_details.flow_run_id)
    by_type: dict[str, list[Any]] = {}
    for a in found:
        by_type.setdefault(a.type, []).append(a)
    [progress] = by_type["progress"]
    assert float(progress.data) == 100.0
    keys_found = {a.key for a in by_type["table"]}
    assert keys_found == {"probe-units", "probe-failed"}
    failed_table = next(a for a in by_type["table"] if a.key == "probe-failed")
    assert "u00001" in str(failed_table.data)


def _trim_threshold() -> str | None:
    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def test_workers_keep_glibc_malloc_defaults(tmp_path: Path) -> None:
    """lsdr's workers start without Dask's MALLOC_TRIM_THRESHOLD_ (it doubled a brick's time)."""
    from distributed import Client

    from lsdr.infra.cluster import dask_cluster
    from lsdr.infra.settings import load_settings

    settings = load_settings(tmp_path, n_workers=1)
    with dask_cluster(settings) as address, Client(address) as client:
        seen = client.run(_trim_threshold)
    assert list(seen.values()) == [None]
