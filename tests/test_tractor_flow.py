"""The tractor phase's policies, provoked for real on lite runbrick bricks and a real cluster.

A worker SIGKILLed while a brick fits its blobs: the brick reruns on a live worker from its
shared checkpoint, refits only the blobs not yet saved, and writes the same catalogue as an
uninterrupted run.  Bricks carry memory estimates that decide how many share a worker.
"""

from __future__ import annotations

import itertools
import os
import pickle
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import probe_units as probe
import pytest
from prefect import flow
from runbrick_survey import BRICK, prepared_survey, private_copy

from lsdr.flows.batching import memory_request
from lsdr.flows.report import PhaseResult, TractorResult, phase_summary
from lsdr.flows.runner import run_units
from lsdr.flows.settings import ledger_for, settings_for
from lsdr.flows.tractor import tractor
from lsdr.infra.cluster import MEMORY_RESOURCE, task_runner
from lsdr.infra.settings import load_settings
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import TractorOptions
from lsdr.tasks.sidecars import read_sidecar, sidecar_path
from lsdr.tasks.tractor import brick_memory_mb, ccd_pixels, plan_tractor
from lsdr.tasks.unit import Unit

cloudpickle.register_pickle_by_value(probe)

SIZE = 600
KILL_SIZE = 900
"""The killed-brick test's grid: enough blobs (sources grouped as legacypipe groups them) to be
killed half-way."""


def run_tractor_flow(root: Path, address: str, size: int = SIZE, **params: Any) -> TractorResult:
    """The tractor flow on one brick (600² by default), on the given cluster."""
    settings: dict[str, Any] = {"n_workers": 2, **params.pop("settings", {})}
    s = load_settings(root, **settings)
    result: TractorResult = tractor.with_options(task_runner=task_runner(s, address))(
        str(root),
        options=TractorOptions(bricks=[BRICK], width=size, height=size, **params),
        settings=settings,
    )
    return result


def read_catalogue(path: Path) -> np.ndarray:
    """A tractor catalogue's rows."""
    import fitsio

    return np.asarray(fitsio.read(str(path), ext=1))


def assert_same_catalogue(a: np.ndarray, b: np.ndarray) -> None:
    """Every column equal (NaN equal to NaN)."""
    assert a.dtype == b.dtype and len(a) == len(b)
    for name in a.dtype.names or ():
        x, y = a[name], b[name]
        same = np.array_equal(x, y, equal_nan=x.dtype.kind == "f")
        assert same, f"column {name} differs"


def unit_summary(layout: ReleaseLayout) -> dict[str, Any]:
    """The summary the brick's unit recorded in its provenance sidecar."""
    data = read_sidecar(sidecar_path(layout, "tractor", BRICK))
    assert data is not None and data.get("state") == "done", data
    summary: dict[str, Any] = data["summary"]
    return summary


TEMPORARY_NAME = re.compile(r"tmp-\d+-.+")
"""A file being written: ``survey/fileio.atomic_path`` writes ``tmp-<pid>-<final name>`` beside
the final file and renames it onto that name when the write succeeds (removes it on error)."""


def leftover_temporaries(root: Path) -> list[Path]:
    """Files under ``root`` still under ``atomic_path``'s temporary name (partial writes)."""
    return sorted(p for p in root.rglob("tmp-*") if TEMPORARY_NAME.fullmatch(p.name))


def test_leftover_temporaries_finds_a_partial_write_and_nothing_else(tmp_path: Path) -> None:
    """A ``tmp-<pid>-<name>`` file left in a catalogue directory is found; final names are not."""
    from lsdr.survey.core.fileio import atomic_path

    tractor_dir = tmp_path / "tractor" / "180"
    tractor_dir.mkdir(parents=True)
    (tractor_dir / "tractor-1804p325.fits").write_bytes(b"done")
    (tractor_dir / "tmpl-1804p325.fits").write_bytes(b"not a temporary name")
    assert leftover_temporaries(tmp_path) == []
    leftover = tractor_dir / "tmp-123-x.fits"
    leftover.write_bytes(b"partial")
    assert leftover_temporaries(tmp_path) == [leftover]
    leftover.unlink()
    # The name the writer really uses while it writes, seen from inside the write.
    final = tmp_path / "coadd" / "180" / "1804p325" / "legacysurvey-1804p325-image-r.fits.fz"
    with atomic_path(final) as tmp:
        tmp.write_bytes(b"being written")
        assert leftover_temporaries(tmp_path) == [tmp]
    assert leftover_temporaries(tmp_path) == [] and final.read_bytes() == b"being written"


def checkpoint_entries(path: Path) -> int:
    """Blobs saved in a checkpoint file (0 when absent or being replaced)."""
    try:
        with open(path, "rb") as f:
            return len(pickle.load(f))
    except (OSError, EOFError, pickle.UnpicklingError):
        return 0


@pytest.mark.slow
def test_killed_brick_resumes_from_its_checkpoint_with_the_same_catalogue(
    tmp_path_factory: pytest.TempPathFactory, dask_address: str
) -> None:
    """SIGKILL to the worker fitting a brick: only unsaved blobs are refitted; same catalogue."""
    prepared = prepared_survey(tmp_path_factory)
    whole = private_copy(prepared, tmp_path_factory.mktemp("uninterrupted") / "release")
    summary = run_tractor_flow(whole.root, dask_address, size=KILL_SIZE)
    assert summary.counts.done == 1, summary
    reference = read_catalogue(whole.tractor(BRICK))
    n_blobs = unit_summary(whole)["blobs_fitted"]
    assert n_blobs >= 6, "the brick needs enough blobs to be killed half-way"

    killed = private_copy(prepared, tmp_path_factory.mktemp("killed") / "release")
    ckpt = killed.checkpoint(BRICK)
    ledger = ledger_for(load_settings(killed.root))
    victims: list[int] = []
    saved: list[int] = []

    def kill_half_way() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if checkpoint_entries(ckpt) >= n_blobs // 3:
                row = ledger.get("tractor", BRICK)
                if row is not None and row.pid and row.state == "running":
                    os.kill(row.pid, signal.SIGKILL)
                    victims.append(row.pid)
                    saved.append(checkpoint_entries(ckpt))  # nothing writes it after the kill
                    return
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_half_way, daemon=True)
    watcher.start()
    summary = run_tractor_flow(
        killed.root, dask_address, size=KILL_SIZE, checkpoint_period=0.0, keep_checkpoints=True
    )
    watcher.join(timeout=5)
    assert victims, "the brick finished before the test could kill its worker"
    assert summary.counts.done == 1, summary
    row = ledger.get("tractor", BRICK)
    assert row is not None and row.attempts == 2 and row.pid != victims[0]
    stats = unit_summary(killed)
    assert 0 < saved[0] < n_blobs
    assert stats["blobs_resumed"] == saved[0], stats
    assert stats["blobs_fitted"] == n_blobs - saved[0], stats
    assert_same_catalogue(read_catalogue(killed.tractor(BRICK)), reference)


@flow(name="probe-memory")
def memory_flow(release_dir: str, keys: list[str], memory_mb: int) -> PhaseResult:
    """Interval probe units, each with a memory estimate, one unit per task."""
    s = settings_for(release_dir, {"n_workers": 1})
    units = [
        Unit(
            "probe",
            key,
            (str(s.release_dir / "inputs" / f"{key}.dat"),),
            (("seconds", 1.5),),
            memory_mb=memory_mb,
        )
        for key in keys
    ]
    return phase_summary(run_units("probe", probe.interval_unit, units, s, batch_size=1))


def intervals(layout: ReleaseLayout, keys: list[str]) -> list[tuple[float, float]]:
    """(start, end) of each interval probe."""
    out = []
    for key in keys:
        start, end = probe.output_of(layout, key).read_text().split()
        out.append((float(start), float(end)))
    return out


def overlapped(spans: list[tuple[float, float]]) -> bool:
    """Whether any two spans ran at the same time."""
    spans = sorted(spans)
    return any(b[0] < a[1] for a, b in itertools.pairwise(spans))


@pytest.mark.slow
@pytest.mark.parametrize(("memory_mb", "together"), [(400, True), (700, False)])
def test_a_worker_runs_two_bricks_at_once_only_when_both_fit(
    tmp_path: Path, prefect_api: str, memory_mb: int, together: bool
) -> None:
    """One worker, two threads, 1000 MB: two 400 MB units overlap, two 700 MB units do not."""
    from distributed import LocalCluster

    keys = ["b1", "b2"]
    (tmp_path / "inputs").mkdir()
    for key in keys:
        (tmp_path / "inputs" / f"{key}.dat").write_text(key)
    cluster = LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=True,
        resources={MEMORY_RESOURCE: 1000},
        dashboard_address=":0",
    )
    try:
        s = load_settings(tmp_path, n_workers=1)
        runner = task_runner(s, str(cluster.scheduler_address))
        summary = memory_flow.with_options(task_runner=runner)(str(tmp_path), keys, memory_mb)
    finally:
        cluster.close()
    assert summary.counts.done == 2, summary
    assert overlapped(intervals(ReleaseLayout(tmp_path), keys)) is together


def test_memory_estimates_grow_with_ccds_and_brick_size_and_never_exceed_a_worker() -> None:
    """The estimate follows CCD count and brick area; a request is capped at a worker's memory."""
    assert brick_memory_mb(20.0) > brick_memory_mb(4.0) > brick_memory_mb(4.0, 1800, 1800)
    units = [Unit("tractor", k, memory_mb=m) for k, m in (("a", 1500), ("b", 900))]
    assert memory_request(units[:1], 4000) == {MEMORY_RESOURCE: 1500}
    assert memory_request(units, 2000) == {MEMORY_RESOURCE: 2000}
    assert memory_request(units, None) is None
    assert memory_request([Unit("tractor", "c")], 4000) is None


def test_planned_bricks_carry_their_ccd_counts(tmp_path_factory: pytest.TempPathFactory) -> None:
    """plan_tractor sizes each brick from the CCDs that overlap it in the survey-ccds tables."""
    layout = prepared_survey(tmp_path_factory)
    (n, mpix) = ccd_pixels(layout, [BRICK], width=SIZE)[BRICK]
    # Every band covers the brick; no CCD can put more than the brick's area under it.
    assert n >= 3 and 0 < mpix <= n * (SIZE * 0.262 / 0.2) ** 2 / 1e6
    (unit,) = plan_tractor(layout, [BRICK], TractorOptions(width=SIZE, height=SIZE))
    (empty,) = plan_tractor(layout, ["0001p000"], TractorOptions(width=SIZE, height=SIZE))
    assert unit.memory_mb == brick_memory_mb(mpix, SIZE, SIZE)
    assert unit.memory_mb > empty.memory_mb == brick_memory_mb(0.0, SIZE, SIZE)


@pytest.mark.slow
def test_brick_out_of_memory_is_rerun_with_half_the_threads_then_recorded(
    tmp_path_factory: pytest.TempPathFactory, dask_address: str
) -> None:
    """A real MemoryError under the unit memory limit: 2 threads, then 1, then a recorded oom.

    A 3000² grid needs several hundred MB of maps beyond what the worker holds, whatever
    earlier tests left mapped in its heap; the limit allows 64 MB.
    """
    layout = private_copy(prepared_survey(tmp_path_factory), tmp_path_factory.mktemp("oom") / "r")
    settings = {"unit_threads": 2, "unit_memory_limit_mb": 64}
    summary = run_tractor_flow(layout.root, dask_address, size=3000, settings=settings)
    assert summary.counts.failed == 1, summary
    ((key, failure_class, message),) = summary.failed
    assert (key, failure_class) == (BRICK, "oom") and "out of memory" in message
    row = ledger_for(load_settings(layout.root)).get("tractor", BRICK)
    assert row is not None and (row.attempts, row.threads) == (2, 1)
    assert not layout.tractor(BRICK).exists()
    assert leftover_temporaries(layout.root) == [], "a partial product was left"


@pytest.mark.slow
def test_brick_with_a_truncated_image_is_a_recorded_science_failure_not_retried(
    tmp_path_factory: pytest.TempPathFactory, dask_address: str
) -> None:
    """A CCD image cut short: the brick fails once with the file named, and a rerun skips it."""
    import fitsio

    layout = private_copy(prepared_survey(tmp_path_factory), tmp_path_factory.mktemp("bad") / "r")
    ccds = fitsio.read(str(sorted(layout.root.glob("survey-ccds-*-*.fits.gz"))[0]))
    image = layout.image(ccds["image_filename"][0].strip())
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    summary = run_tractor_flow(layout.root, dask_address)
    ((key, failure_class, message),) = summary.failed
    assert (key, failure_class) == (BRICK, "science")
    assert image.name in message, message
    assert not layout.tractor(BRICK).exists()
    ledger = ledger_for(load_settings(layout.root))
    starts = ledger.get("tractor", BRICK)
    assert starts is not None and starts.attempts == 1

    again = run_tractor_flow(layout.root, dask_address)
    assert again.counts.failed == 1 and again.counts.done == 0
    row = ledger.get("tractor", BRICK)
    assert row is not None and row.attempts == 1, "a science failure must not rerun blindly"
