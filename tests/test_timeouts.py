"""Per-phase timeouts for real: a unit that really hangs on a Dask worker is stopped at its timeout.

Units standing in for ``zeropoints`` units (the ``timeouts`` setting names the phase of the
units it applies to) run on the session's LocalCluster; the victim hangs half-way through
writing its output (``tests/timeout_units.py``).  Each test checks that the phase completes,
the other units done once, the hung one failed with class ``timeout`` and the message that
names it, nothing left running (its process, its child, the workers' children) and no
temporary file left.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import cloudpickle
import probe_units as probe
import psutil
import pytest
import timeout_units
from prefect import flow
from test_orchestration import make_release

from lsdr.flows.report import PhaseResult, phase_summary
from lsdr.flows.runner import run_units
from lsdr.flows.settings import ledger_for, settings_for
from lsdr.infra.cluster import task_runner
from lsdr.infra.settings import load_settings
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.unit import Unit

cloudpickle.register_pickle_by_value(probe)
cloudpickle.register_pickle_by_value(timeout_units)

PHASE = "zeropoints"
TEMPORARY_NAME = re.compile(r"tmp-\d+-.+")


@flow(name="probe-timeouts")
def hang_flow(
    release_dir: str, keys: list[str], options: dict[str, Any], settings: dict[str, Any]
) -> PhaseResult:
    """Hang probe units, one per key, as the ``zeropoints`` phase's units."""
    s = settings_for(release_dir, settings)
    units = [
        Unit(
            PHASE,
            key,
            (str(s.release_dir / "inputs" / f"{key}.dat"),),
            tuple(sorted(options.items())),
        )
        for key in keys
    ]
    return phase_summary(run_units(PHASE, timeout_units.hang_unit, units, s))


def run(root: Path, address: str, keys: list[str], **options: Any) -> PhaseResult:
    """The hang flow on the session's cluster, the phase's timeout 3 s, two units a batch."""
    settings = {"n_workers": 2, "batch_size": 2, "timeouts": {PHASE: 3}}
    runner = task_runner(load_settings(root, **settings), address)
    result: PhaseResult = hang_flow.with_options(task_runner=runner)(
        str(root), keys, options, settings
    )
    return result


def worker_children(address: str) -> list[psutil.Process]:
    """Processes the cluster's worker processes have started and that still run."""
    import os

    from distributed import Client

    with Client(address) as client:
        pids = client.run(os.getpid).values()
    found: list[psutil.Process] = []
    for pid in pids:
        found += [p for p in psutil.Process(pid).children(recursive=True) if p.status() != "zombie"]
    return found


def gone(pid: int) -> bool:
    """Whether no process ``pid`` runs (a reaped one, or none)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def check_outcome(root: Path, keys: list[str], result: PhaseResult, how: str) -> None:
    """The others done once with their checksums; the victim failed [timeout], named; no tmp."""
    assert result.counts.model_dump() == {"done": len(keys) - 1, "cached": 0, "failed": 1}
    [(key, cls, message)] = result.failed
    assert (key, cls) == ("u00002", "timeout")
    assert message == (
        f"u00002: past the zeropoints timeout of 3 s, {how}; raise it with "
        "'lsdr run zeropoints --timeout SECONDS' or the setting 'timeouts: {zeropoints: SECONDS}'"
    )
    layout = ReleaseLayout(root)
    for k in keys:
        out = probe.output_of(layout, k)
        if k == "u00002":
            assert not out.exists()
        else:
            data = (root / "inputs" / f"{k}.dat").read_bytes()
            assert out.read_text() == hashlib.sha256(data).hexdigest()
    rows = {r.key: r for r in ledger_for(settings_for(str(root), None)).rows(PHASE)}
    assert {k: (r.state, r.attempts) for k, r in rows.items()} == {
        k: ("failed" if k == "u00002" else "done", 1) for k in keys
    }
    assert rows["u00002"].failure_class == "timeout"
    left = [p for p in root.rglob("tmp-*") if TEMPORARY_NAME.fullmatch(p.name)]
    assert left == []


def test_a_hung_unit_is_stopped_at_its_timeout_and_the_others_complete(
    tmp_path: Path, dask_address: str
) -> None:
    """A unit in a pure-Python loop past its phase's timeout: SIGTERM stops it, tmp removed."""
    keys = make_release(tmp_path, 5)
    result = run(tmp_path, dask_address, keys, victim="u00002")
    check_outcome(tmp_path, keys, result, "stopped")
    layout = ReleaseLayout(tmp_path)
    victim = int(Path(timeout_units.pid_file(layout, "u00002")).read_text())
    assert gone(victim)
    assert worker_children(dask_address) == []


@pytest.mark.slow
def test_a_unit_deaf_to_sigterm_is_killed_with_its_child_after_the_grace(
    tmp_path: Path, dask_address: str
) -> None:
    """SIGTERM blocked, a child process of its own: SIGKILL of its group after the grace."""
    keys = make_release(tmp_path, 3)
    result = run(tmp_path, dask_address, keys, victim="u00002", stubborn=True)
    check_outcome(tmp_path, keys, result, "killed after 10 s more")
    layout = ReleaseLayout(tmp_path)
    for what in ("unit", "child"):
        assert gone(int(Path(timeout_units.pid_file(layout, "u00002", what)).read_text()))
    assert worker_children(dask_address) == []


BAILOUT = 1 << 10
"""The Legacy Surveys' MASKBITS bit 10, BAILOUT: "no fit was attempted here" (DR9/DR10 docs)."""
BRICK_TIMEOUT_S = 60
"""The tractor phase's timeout in the brick test: past the stages before fitblobs (seconds on
the 600² brick), short enough for the test; the engine hangs mid-fit, so the timeout comes."""


@pytest.mark.slow
def test_a_brick_past_its_timeout_resumes_from_its_checkpoint_with_bail_out(
    tmp_path_factory: pytest.TempPathFactory, dask_address: str
) -> None:
    """A brick hung mid-fit: stopped at the tractor timeout, rerun from its checkpoint, bailed."""
    import fitsio
    import hanging_engine
    import numpy as np
    from runbrick_survey import BRICK, prepared_survey, private_copy
    from test_tractor_flow import checkpoint_entries

    from lsdr.flows.tractor import tractor
    from lsdr.survey.core.phase_options import TractorOptions
    from lsdr.tasks.sidecars import read_sidecar, sidecar_path

    layout = private_copy(prepared_survey(tmp_path_factory), tmp_path_factory.mktemp("hung") / "r")
    settings = {
        "n_workers": 2,
        "engine": "hanging_engine:HangingEngine",
        "timeouts": {"tractor": BRICK_TIMEOUT_S},
    }
    s = load_settings(layout.root, **settings)
    result = tractor.with_options(task_runner=task_runner(s, dask_address))(
        str(layout.root),
        options=TractorOptions(bricks=[BRICK], width=600, height=600, keep_checkpoints=True),
        settings=settings,
    )
    assert hanging_engine.hung_marker(layout, BRICK).exists(), "timed out before fitblobs"
    assert result.counts.model_dump() == {"done": 1, "cached": 0, "failed": 0}, result
    row = ledger_for(s).get("tractor", BRICK)
    assert row is not None and (row.state, row.attempts) == ("done", 2)
    sidecar = read_sidecar(sidecar_path(layout, "tractor", BRICK))
    assert sidecar is not None and sidecar["state"] == "done"
    stats = sidecar["summary"]
    # The first start's checkpoint held the blobs fitted before the hang; the rerun read them
    # and fitted nothing more, bailing out of the rest.
    assert checkpoint_entries(layout.checkpoint(BRICK)) == hanging_engine.HANG_AFTER
    assert stats["blobs_resumed"] == hanging_engine.HANG_AFTER, stats
    assert stats["blobs_fitted"] == 0 and stats["blobs_bailed"] > 0, stats
    maskbits = fitsio.read(str(layout.coadd_maskbits(BRICK)))
    assert np.count_nonzero(maskbits & BAILOUT) > 0
    catalogue = fitsio.read(str(layout.tractor(BRICK)), ext=1)
    assert len(np.unique(catalogue["objid"])) == len(catalogue)  # no source written twice
    left = [p for p in layout.root.rglob("tmp-*") if TEMPORARY_NAME.fullmatch(p.name)]
    assert left == []
    assert worker_children(dask_address) == []


def test_the_timeouts_setting_merges_its_phases_over_the_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file's, the environment's and the command's timeouts merge phase by phase."""
    (tmp_path / "lsdr.yaml").write_text("timeouts:\n  zeropoints: 600\n  tractor: 14400\n")
    monkeypatch.setenv("LSDR_TIMEOUTS", '{"merge": 60}')
    s = load_settings(tmp_path, timeouts={"tractor": 5})
    assert s.timeouts == {"zeropoints": 600.0, "merge": 60.0, "tractor": 5.0}


def test_a_bad_timeout_is_one_line_naming_where_it_was_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown phase names the file; a timeout of 0 the variable; --timeout 0 exits 2."""
    import subprocess
    import sys

    from lsdr.survey.core.errors import UsageError

    (tmp_path / "lsdr.yaml").write_text("timeouts:\n  tracor: 600\n")
    with pytest.raises(UsageError, match=r"lsdr\.yaml: timeouts: unknown phase 'tracor'"):
        load_settings(tmp_path)
    (tmp_path / "lsdr.yaml").unlink()
    monkeypatch.setenv("LSDR_TIMEOUTS", '{"tractor": 0}')
    with pytest.raises(
        UsageError, match=r"^LSDR_TIMEOUTS: tractor: timeout 0\.0 s must be above 0$"
    ):
        load_settings(tmp_path)
    monkeypatch.delenv("LSDR_TIMEOUTS")
    command = ["run", "tractor", "--release-dir", str(tmp_path), "--timeout", "0"]
    done = subprocess.run(
        [sys.executable, "-m", "lsdr", *command],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stderr) == (
        2,
        "lsdr: error: --timeout 0: a timeout must be above 0 seconds\n",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []
