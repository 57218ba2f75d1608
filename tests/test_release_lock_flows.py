"""The release lock in the flows a Prefect worker runs: refused with its line, or waited for.

A real holder process (tests/lock_holder.py) holds the lock; the flows run here on the
session's real Prefect server, as the worker runs them (the deployable flow function itself,
``deployments/phases.py``, ``flows/reprocess.py``).  A refused run is FAILED with the lock's
one line as its state message and has planned no unit; with ``lock_wait`` a run waits and then
runs.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

import probe_units as probe
import pytest
from prefect.states import State
from small_release import make_small_release, unit_states
from test_orchestration import probe_flow
from test_release_lock import Holder, started

from lsdr.deployments.phases import run_kdtree
from lsdr.flows.reprocess import reprocess_region
from lsdr.infra.cluster import task_runner
from lsdr.infra.release_lock import holders
from lsdr.infra.settings import load_settings
from lsdr.survey.core.reprocess_request import ReprocessRequest

__all__ = ["started"]  # test_release_lock's fixture: the holders a test starts, killed after


@pytest.fixture
def release(tmp_path: Path, prefect_api: str) -> Path:
    """A small real release (five probe units, one failed) and the session's Prefect server."""
    root = tmp_path / "release"
    make_small_release(root)
    return root


def failed_message(state: State[Any]) -> str:
    """The message of a FAILED flow-run state (any other state fails the test)."""
    assert state.is_failed(), state
    return str(state.message)


def test_a_deployed_phase_flow_fails_with_the_lock_line_and_plans_no_unit(
    release: Path, started: list[Holder]
) -> None:
    """``run-kdtree`` while a release run holds the lock: FAILED, the line, the ledger as it was."""
    holder = Holder(release, "exclusive", f"lsdr run release --release-dir {release}")
    started.append(holder)
    before = unit_states(release)
    state = run_kdtree(release_dir=str(release), return_state=True)
    message = failed_message(state)
    assert (
        f"release {release} is held by host {socket.gethostname()} pid {holder.pid} since "
        in message
    )
    assert message.endswith(
        f"UTC (lsdr run release --release-dir {release}): wait with --wait, or stop it"
    ), message
    assert "Traceback" not in message
    assert unit_states(release) == before, "a unit was planned"


def test_reprocess_region_shares_the_lock_with_requests_but_not_with_a_release_run(
    release: Path, started: list[Holder]
) -> None:
    """Beside a shared holder it passes the lock (to its own refusal); beside an exclusive, not."""
    request = ReprocessRequest.model_validate({"bricks": ["1804p325"]})
    shared = Holder(release, "shared", "lsdr reprocess --bricks 1804p327")
    started.append(shared)
    beside = failed_message(reprocess_region(str(release), request, return_state=True))
    assert "held by" not in beside, beside  # past the lock: the request's own check refused it
    shared.let_go()

    holder = Holder(release, "exclusive", f"lsdr run tractor --release-dir {release}")
    started.append(holder)
    refused = failed_message(reprocess_region(str(release), request, return_state=True))
    assert f"pid {holder.pid} since " in refused, refused
    assert refused.endswith(
        f"(lsdr run tractor --release-dir {release}): wait with --wait, or stop it"
    )


class Said(logging.Handler):
    """Collects the lsdr.flows records (the lock's waiting notice among them)."""

    def __init__(self) -> None:
        """Empty, with an event set at the first waiting notice."""
        super().__init__()
        self.lines: list[str] = []
        self.waiting = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the line; note a waiting notice."""
        line = record.getMessage()
        self.lines.append(line)
        if "waiting for it to let go" in line:
            self.waiting.set()


def test_with_lock_wait_a_flow_waits_for_the_holder_then_runs_its_units(
    release: Path, started: list[Holder], dask_address: str
) -> None:
    """Units run through ``run_units`` only once the holder lets go; the notice names it."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(probe)
    keys = ["w0", "w1"]
    (release / "inputs" / "w0.dat").write_bytes(b"w0" * 50)
    (release / "inputs" / "w1.dat").write_bytes(b"w1" * 50)
    holder = Holder(release, "exclusive", f"lsdr run release --release-dir {release}")
    started.append(holder)
    settings = {"n_workers": 2, "batch_size": 4, "lock_wait": True}
    runner = task_runner(load_settings(release, **settings), dask_address)
    said = Said()
    logger = logging.getLogger("lsdr.flows")
    logger.addHandler(said)
    outcome: list[Any] = []
    try:
        # In this test's context: its Prefect settings name the session's server.
        context = contextvars.copy_context()
        flow_thread = threading.Thread(
            target=context.run,
            args=(
                lambda: outcome.append(
                    probe_flow.with_options(task_runner=runner)(
                        str(release), "checksum", keys, settings=settings
                    )
                ),
            ),
        )
        flow_thread.start()
        assert said.waiting.wait(timeout=300), said.lines
        assert flow_thread.is_alive()
        assert not any(k in {key for _, key, _ in unit_states(release)} for k in keys)
        assert [h.pid for h in holders(release / "state" / "release.lock")] == [holder.pid]
        holder.let_go()
        flow_thread.join(timeout=300)
    finally:
        logger.removeHandler(said)
    [result] = outcome
    assert result.counts.model_dump() == {"done": 2, "cached": 0, "failed": 0}
    assert {("probe", k, "done") for k in keys} <= unit_states(release)
    [notice] = [line for line in said.lines if "waiting for it to let go" in line]
    assert f"pid {holder.pid} since " in notice
    assert holders(release / "state" / "release.lock") == []
    records = [json.loads(line) for line in (release / "state" / "release.lock").open()]
    assert {r["event"] for r in records} == {"acquired", "released"}
    assert {r["pid"] for r in records} == {os.getpid()}
    assert all(r["command"].startswith("flow run probe/") for r in records), records
