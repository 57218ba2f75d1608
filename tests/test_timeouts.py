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


def make_release(root: Path, n: int) -> list[str]:
    """A release directory with ``n`` small input files."""
    (root / "inputs").mkdir(parents=True)
    keys = [f"u{i:05d}" for i in range(n)]
    for key in keys:
        (root / "inputs" / f"{key}.dat").write_bytes(key.encode() * 100)
    return keys


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
        f"zeropoints u00002: past its timeout of 3 s, {how}; raise it with "
        "'lsdr run ... --timeout SECONDS' or the setting 'timeouts: {zeropoints: SECONDS}'"
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
