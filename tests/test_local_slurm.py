"""The SLURM path for real: a local slurmctld + slurmd, ``local-slurm`` workers as batch jobs.

The project's own ``LocalSlurm`` (``lsdr slurm up``) starts the cluster once for the module and
stops it at the end, also when a test fails.  On it: an image and bricks of the demo release
redone, whose products must equal the ``local`` profile's; a brick whose worker job is
``scancel``led while it fits, which resumes from its checkpoint on another job; a unit longer
than its jobs' walltime, which completes over replacement jobs; and a real legacypipe test case
with the real runbrick.  Every worker is a SLURM job: ``sacct`` (the cluster's own accounting:
MariaDB and slurmdbd) lists it, and the run log names the job each unit ran in.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import fitsio
import numpy as np
import probe_units as probe
import pytest
from demo_release import DemoRun, copy_release, lsdr
from legacypipe_cases import CASES, release_copy
from prefect import flow
from release_values import compare_releases
from reprocess_runs import cheapest_bricks
from required_in_ci import unavailable
from runbrick_survey import BRICK, prepared_survey, private_copy

from lsdr.flows.report import PhaseResult, TractorResult, phase_summary
from lsdr.flows.runner import run_units
from lsdr.flows.settings import ledger_for, settings_for
from lsdr.flows.tractor import tractor
from lsdr.infra.cluster import task_runner
from lsdr.infra.legacypipe_build import LegacypipeBuild
from lsdr.infra.settings import load_settings
from lsdr.infra.slurm.accounting import accounted_jobs
from lsdr.infra.slurm.local import WORKER_JOB_NAME, LocalSlurm
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import TractorOptions
from lsdr.tasks.sidecars import read_sidecar, sidecar_path
from lsdr.tasks.unit import Unit

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

cloudpickle.register_pickle_by_value(probe)

SLURM_JOB = re.compile(r"unit (\S+) (\S+): start on \S+ pid \d+ \(SLURM job (\d+)\)")
"""A worker's log line for a unit it starts, naming its SLURM job (``tasks/batch.py``)."""


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory, prefect_api: str) -> Iterator[LocalSlurm]:
    """The local SLURM, started by the project's code for this module, stopped at its end.

    Started after the Prefect server, so that worker jobs (``sbatch`` exports the environment)
    report to it.
    """
    if os.geteuid() != 0:
        unavailable("the local SLURM needs root (it starts slurmctld and slurmd)")
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    saved = {k: os.environ.get(k) for k in ("LSDR_SLURM_DIR", "SLURM_CONF")}
    os.environ["LSDR_SLURM_DIR"] = str(cluster.root)
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        cluster.up()
        yield cluster
    finally:
        stopped = cluster.down()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        left = {d: pid for d, pid in cluster.status().daemons.items() if pid is not None}
        assert not left, (left, stopped)


def worker_jobs(cluster: LocalSlurm) -> dict[str, str]:
    """Jobs named ``lsdr-worker``: job id → sacct's state (``CANCELLED by 0`` → ``CANCELLED``)."""
    accounted = accounted_jobs({**os.environ, **cluster.environment()}, name=WORKER_JOB_NAME)
    assert accounted is not None, "sacct cannot answer: the local SLURM has no accounting"
    return {job.job_id: job.state.split()[0] for job in accounted}


def units_by_job(log_dir: Path) -> dict[tuple[str, str], set[str]]:
    """(phase, key) → the SLURM jobs a unit started in, from the release's run logs."""
    found: dict[tuple[str, str], set[str]] = {}
    for log in log_dir.glob("run-*.log"):
        for phase, key, job in SLURM_JOB.findall(log.read_text(errors="replace")):
            found.setdefault((phase, key), set()).add(job)
    return found


def test_up_twice_is_a_no_op_and_jobs_run(slurm: LocalSlurm) -> None:
    """A second ``up`` keeps the daemons it started; ``srun hostname`` runs as a job."""
    before = slurm.status()
    assert before.up, before
    again = slurm.up()
    assert again.daemons == before.daemons
    done = subprocess.run(
        ["srun", "-t", "1", "hostname"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == os.uname().nodename.split(".")[0]
    shown = lsdr("slurm", "status", "--state-dir", str(slurm.root))
    assert shown.returncode == 0 and f"slurmctld: pid {before.daemons['slurmctld']}" in shown.stdout


REDONE_BRICKS = 2
"""Bricks of the demo redone on SLURM (the cheapest): a whole demo there costs 16 CI minutes."""


@pytest.mark.timeout(2400)  # the shared demo (made here if first) and its rerun on SLURM
def test_demo_release_on_local_slurm_equals_the_local_profiles(
    slurm: LocalSlurm, demo_release: DemoRun, tmp_path: Path
) -> None:
    """``lsdr demo`` with ``cluster: local-slurm`` redoes an image and bricks: same products.

    A copy of the demo release (made with the ``local`` profile) loses one image's zeropoint
    products and two bricks' catalogues; ``lsdr demo`` on it with ``LSDR_CLUSTER=local-slurm``
    redoes them (and what reads them) with workers that are SLURM jobs, and every product
    equals the local profile's by value.
    """
    out = copy_release(demo_release.out, tmp_path / "demo")
    bricks = cheapest_bricks(out, REDONE_BRICKS)
    photom = sorted(out.glob("zpt/90prime/**/*-photom.fits"))[0]
    image = photom.name.removesuffix("-photom.fits")
    removed = [photom] + [out / "tractor-i" / b[:3] / f"tractor-i-{b}.fits" for b in bricks]
    for path in removed:
        path.unlink()  # raises if the demo's layout moved: the test would prove nothing
    env = {**os.environ, "LSDR_CLUSTER": "local-slurm"}
    done = lsdr("demo", "--out", str(out), env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    comparison = compare_releases(demo_release.out, out)
    assert comparison.values_equal, [str(d) for d in comparison.differences[:10]]
    assert all(path.is_file() for path in removed)
    layout = ReleaseLayout(out)
    jobs = worker_jobs(slurm)
    assert jobs, "no worker job in the cluster's accounting"
    ran = units_by_job(layout.state_dir / "logs")
    assert sorted(key for phase, key in ran if phase == "tractor") == sorted(bricks), ran
    assert [key for phase, key in ran if phase == "zeropoints" and image in key], ran
    assert set().union(*ran.values()) <= set(jobs), (ran, jobs)
    # Each job's own output file (its worker's stderr) names the units the run log gives it.
    outputs = {
        p.stem.removeprefix("worker-"): p.read_text(errors="replace")
        for p in (layout.state_dir / "slurm").glob("worker-*.out")
    }
    for (phase, key), in_jobs in ran.items():
        for job in in_jobs:
            assert f"unit {phase} {key}: start on " in outputs.get(job, ""), (phase, key, job)


def run_brick_flow(root: Path, settings: dict[str, Any], **options: Any) -> TractorResult:
    """The tractor flow on the prepared brick (600²) with its own cluster of ``settings``."""
    s = load_settings(root, **settings)
    result: TractorResult = tractor.with_options(task_runner=task_runner(s, None))(
        str(root),
        options=TractorOptions(bricks=[BRICK], width=600, height=600, **options),
        settings=settings,
    )
    return result


def slurm_job_of(pid: int) -> str | None:
    """The SLURM job a process runs in (its ``SLURM_JOB_ID``)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in environ:
        if item.startswith(b"SLURM_JOB_ID="):
            return item.split(b"=", 1)[1].decode()
    return None


def checkpoint_entries(path: Path) -> int:
    """Blobs saved in a lite checkpoint (0 while absent or being replaced)."""
    import pickle

    try:
        with open(path, "rb") as f:
            return len(pickle.load(f))
    except (OSError, EOFError, pickle.UnpicklingError):
        return 0


def test_scancelled_worker_job_brick_resumes_on_another_job(
    slurm: LocalSlurm, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``scancel`` the job fitting a brick: resumed elsewhere, infra retry recorded, same brick."""
    prepared = prepared_survey(tmp_path_factory)
    whole = private_copy(prepared, tmp_path_factory.mktemp("slurm-whole") / "release")
    cluster = {"cluster": "local-slurm", "nodes": 2}
    reference = run_brick_flow(whole.root, cluster)
    assert reference.counts.done == 1, reference
    n_blobs = read_sidecar(sidecar_path(whole, "tractor", BRICK))["summary"]["blobs_fitted"]

    killed = private_copy(prepared, tmp_path_factory.mktemp("slurm-killed") / "release")
    ckpt = killed.checkpoint(BRICK)
    ledger = ledger_for(load_settings(killed.root))
    cancelled: list[str] = []

    def cancel_half_way() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if checkpoint_entries(ckpt) >= n_blobs // 3:
                row = ledger.get("tractor", BRICK)
                job = slurm_job_of(row.pid) if row is not None and row.pid else None
                if job is not None and row is not None and row.state == "running":
                    subprocess.run(["scancel", job], check=True, timeout=30)
                    cancelled.append(job)
                    return
            time.sleep(0.02)

    watcher = threading.Thread(target=cancel_half_way, daemon=True)
    watcher.start()
    result = run_brick_flow(killed.root, cluster, checkpoint_period=0.0, keep_checkpoints=True)
    watcher.join(timeout=5)
    assert cancelled, "the brick finished before its job could be cancelled"
    assert result.counts.done == 1 and not result.failed, result
    summary = read_sidecar(sidecar_path(killed, "tractor", BRICK))["summary"]
    assert summary["blobs_resumed"] > 0, summary
    kept = re.findall(
        r"(\d+) of (\d+) checkpointed blobs kept", killed.brick_log(BRICK).read_text()
    )
    assert kept and int(kept[-1][0]) == summary["blobs_resumed"], kept
    retries = ledger.infra_retries("tractor")
    assert [r.key for r in retries] == [BRICK] and "never finished" in retries[0].reason
    assert worker_jobs(slurm).get(cancelled[0]) == "CANCELLED"
    shown = lsdr("status", "--release-dir", str(killed.root))
    assert f"INFRA RETRY tractor {BRICK} start 2" in shown.stdout, shown.stdout

    a = np.asarray(fitsio.read(str(killed.tractor(BRICK)), ext=1))
    b = np.asarray(fitsio.read(str(whole.tractor(BRICK)), ext=1))
    assert a.dtype == b.dtype and len(a) == len(b)
    for name in a.dtype.names or ():
        assert np.array_equal(a[name], b[name], equal_nan=a[name].dtype.kind == "f"), name


@flow(name="probe-walltime")
def walltime_flow(release_dir: str, seconds: float, settings: dict[str, Any]) -> PhaseResult:
    """One resumable probe unit of ``seconds`` on the local SLURM."""
    s = settings_for(release_dir, settings)
    unit = Unit("probe", "long", (), (("seconds", seconds),))
    return phase_summary(run_units("probe", probe.resumable_unit, [unit], s, batch_size=1))


def test_unit_longer_than_its_jobs_walltime_completes_over_replacement_jobs(
    slurm: LocalSlurm, tmp_path: Path
) -> None:
    """90 s of work, jobs of 1 minute whose workers leave at 40 ± 5 s: resumed, completed."""
    root = tmp_path / "release"
    root.mkdir()
    settings = {
        "cluster": "local-slurm",
        "nodes": 1,
        "walltime": "00:01:00",
        "worker_lifetime": "40s",
        "lifetime_stagger": "5s",
    }
    s = load_settings(root, **settings)
    result = walltime_flow.with_options(task_runner=task_runner(s, None))(str(root), 90.0, settings)
    # Done by this flow: in its last start, or in one Dask had moved away from a leaving worker
    # (the rerun then finds its sidecar: cached).
    assert result.counts.done + result.counts.cached == 1 and not result.failed, result
    summary = read_sidecar(sidecar_path(ReleaseLayout(root), "probe", "long"))["summary"]
    assert summary["starts"] >= 2, summary
    resumed = summary["resumed_at"]
    assert resumed[0] == 0 and all(b > a for a, b in itertools.pairwise(resumed))
    assert ledger_for(s).infra_retries("probe"), "the restart is not recorded as an infra retry"
    assert len(worker_jobs(slurm)) >= 2


def test_real_legacypipe_case_on_local_slurm(
    slurm: LocalSlurm, legacypipe: LegacypipeBuild, tmp_path: Path
) -> None:
    """testcase6 through ``lsdr run tractor --engine legacypipe`` on ``local-slurm``."""
    case = CASES["testcase6"]
    layout = release_copy(case, tmp_path)
    env = {**os.environ, "LSDR_CLUSTER": "local-slurm"}
    command = [sys.executable, "-m", "lsdr", "run", "tractor", "--release-dir", str(layout.root)]
    flags = ["--engine", "legacypipe", "--zoom", *map(str, case.zoom)]
    done = subprocess.run(
        [*command, *flags], capture_output=True, text=True, timeout=600, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = read_sidecar(sidecar_path(layout, "tractor", case.brick))
    assert data is not None and data["engine"] == "legacypipe" and data["state"] == "done"
    assert data["summary"]["rows"] > 0
    jobs = units_by_job(layout.state_dir / "logs")[("tractor", case.brick)]
    assert jobs and jobs <= set(worker_jobs(slurm)) | {j.job_id for j in slurm.status().jobs}


def test_status_lists_the_slurm_jobs_serving_the_release(slurm: LocalSlurm, tmp_path: Path) -> None:
    """A worker job writing into the release's ``state/slurm/``: ``lsdr status`` shows it."""
    layout = ReleaseLayout(tmp_path / "release")
    (layout.state_dir / "slurm").mkdir(parents=True)
    ledger_for(load_settings(layout.root)).plan("tractor", [BRICK])
    output = layout.state_dir / "slurm" / "worker-%j.out"
    submitted = subprocess.run(
        ["sbatch", "--parsable", "-J", WORKER_JOB_NAME, "-o", str(output), "--wrap", "sleep 60"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    job = submitted.stdout.strip().split(";")[0]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            shown = lsdr("status", "--release-dir", str(layout.root))
            if re.search(rf"{job}\s.*RUNNING", shown.stdout):
                break
            time.sleep(1)
        assert re.search(rf"{job}\s.*RUNNING", shown.stdout), shown.stdout
        assert "SLURM worker jobs" in shown.stdout
    finally:
        subprocess.run(["scancel", job], check=False, timeout=30)


def test_every_worker_job_cancelled_gets_replacements_and_the_run_completes(
    slurm: LocalSlurm, tmp_path: Path
) -> None:
    """``scancel`` every worker job mid-unit: the pool submits new jobs; it never hangs."""
    root = tmp_path / "release"
    root.mkdir()
    settings = {"cluster": "local-slurm", "nodes": 2}
    s = load_settings(root, **settings)
    progress = root / "probe-progress" / "long.txt"
    cancelled: list[list[str]] = []
    finished = threading.Event()

    def cancel_all_once_started() -> None:
        # For as long as the run lasts: on a busy machine the jobs can take minutes to start.
        while not finished.is_set():
            if progress.exists():
                running = [j.job_id for j in slurm.status().jobs if j.name == WORKER_JOB_NAME]
                subprocess.run(["scancel", "--name", WORKER_JOB_NAME], check=True, timeout=30)
                cancelled.append(running)
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=cancel_all_once_started, daemon=True)
    watcher.start()
    try:
        result = walltime_flow.with_options(task_runner=task_runner(s, None), timeout_seconds=600)(
            str(root), 10.0, settings
        )
    finally:
        finished.set()
    watcher.join(timeout=5)
    assert cancelled and cancelled[0], "no worker job was running to cancel"
    assert result.counts.done + result.counts.cached == 1 and not result.failed, result
    jobs = worker_jobs(slurm)
    assert all(jobs.get(j) == "CANCELLED" for j in cancelled[0]), jobs
    seen = set(jobs) | {j.job_id for j in slurm.status().jobs}
    last_cancelled = max(int(j) for j in cancelled[0])
    assert any(int(j) > last_cancelled for j in seen), "no replacement job was submitted"
    summary = read_sidecar(sidecar_path(ReleaseLayout(root), "probe", "long"))["summary"]
    assert summary["starts"] >= 2, summary
