"""Storage faults, injected for real: a full file system, a read-only one, no permission.

A small tmpfs is mounted where one unit writes and filled to its last byte, so the unit's
``fitsio`` write fails as it does on a full disk; another tmpfs is remounted read-only; a
directory is denied to an unprivileged user (``setpriv`` to ``nobody``: root ignores modes).
Each test checks 0 units lost, 0 duplicated, the outputs' values, no temporary file left, and
the line the user sees.  Mounting needs root: a test fails (never skips) without it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest
import storage_units as su
from prefect import flow

from lsdr.flows.report import PhaseResult, phase_summary
from lsdr.flows.runner import run_units
from lsdr.flows.settings import ledger_for, settings_for
from lsdr.infra.cluster import task_runner
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.execute import execute_unit
from lsdr.tasks.sidecars import iter_sidecars
from lsdr.tasks.unit import Unit

cloudpickle.register_pickle_by_value(su)

KEYS = ["u00000", "u00001", "u00002", "u00003"]
VICTIM = "u00001"
"""The unit whose output directory is the small file system."""


@flow(name="storage-probe")
def storage_flow(release_dir: str, keys: list[str], settings: dict[str, Any]) -> PhaseResult:
    """Run ``table_unit`` once per key, input ``inputs/<key>.dat``."""
    s = settings_for(release_dir, settings)
    units = [Unit("probe", k, (str(s.release_dir / "inputs" / f"{k}.dat"),)) for k in keys]
    return phase_summary(run_units("probe", su.table_unit, units, s))


ADDRESS: list[str] = []


@pytest.fixture
def cluster(dask_address: str) -> None:
    """The session's Dask cluster for :func:`run` (the other tests need none)."""
    ADDRESS[:] = [dask_address]


def make_release(root: Path, keys: list[str] = KEYS) -> Path:
    """A release of small input files, one per key, each with its own bytes."""
    (root / "inputs").mkdir(parents=True)
    for n, key in enumerate(keys):
        (root / "inputs" / f"{key}.dat").write_bytes(bytes(range(n, 256)) * 3)
    return root


def run(root: Path, keys: list[str] = KEYS, **settings: Any) -> PhaseResult:
    """The probe flow on the session's Dask cluster, one unit per batch."""
    from lsdr.infra.settings import load_settings

    given = {"n_workers": 2, "batch_size": 1, **settings}
    runner = task_runner(load_settings(root, **given), ADDRESS[0])
    result: PhaseResult = storage_flow.with_options(task_runner=runner)(str(root), keys, given)
    return result


def tables(root: Path, keys: list[str]) -> dict[str, np.ndarray]:
    """Each unit's output table, read back."""
    import fitsio

    layout = ReleaseLayout(root)
    return {k: fitsio.read(str(su.table_of(layout, k)), ext="TABLE") for k in keys}


def leftovers(root: Path) -> list[Path]:
    """Temporary files of atomic writes (``tmp-<pid>-name``) anywhere in the release."""
    return sorted(p for p in root.rglob("tmp-*"))


@pytest.fixture
def undisturbed(tmp_path_factory: pytest.TempPathFactory, cluster: None) -> dict[str, np.ndarray]:
    """The tables of a run on a file system with room."""
    root = make_release(tmp_path_factory.mktemp("undisturbed"))
    assert run(root).counts.model_dump() == {"done": 4, "cached": 0, "failed": 0}
    return tables(root, KEYS)


@pytest.fixture
def full_fs(tmp_path: Path, cluster: None) -> Iterator[tuple[Path, Path]]:
    """A release whose victim's output directory is a 1 MiB tmpfs, full: (release, filler)."""
    root = make_release(tmp_path / "release")
    with su.tmpfs(su.table_of(ReleaseLayout(root), VICTIM).parent, "1m") as mount:
        yield root, su.fill(mount)


def test_a_full_disk_freed_during_the_backoff_completes_the_unit(
    full_fs: tuple[Path, Path],
    undisturbed: dict[str, np.ndarray],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """ENOSPC: the unit waits, the filler is removed meanwhile, it reruns once and completes."""
    root, filler = full_fs
    mount = filler.parent
    ledger = ledger_for(settings_for(str(root), None))
    freed = threading.Event()

    class FreeOnWait(logging.Handler):
        """Removes the filler once the run says it waits for space (during the back-off)."""

        def emit(self, record: logging.LogRecord) -> None:
            if "before resubmitting" in record.getMessage() and not freed.is_set():
                filler.unlink()
                freed.set()

    handler = FreeOnWait()
    flows_log = logging.getLogger("lsdr.flows")
    flows_log.addHandler(handler)
    with caplog.at_level(logging.WARNING, logger="lsdr.flows"):
        try:
            result = run(root, space_backoff="0.5s", space_backoffs=6, space_min_free_mb=1)
        finally:
            flows_log.removeHandler(handler)
    assert freed.is_set(), "the victim never failed: the file system was not full"
    assert result.counts.model_dump() == {"done": 4, "cached": 0, "failed": 0}
    # 0 lost: every unit done in the ledger; 0 duplicated: one start each, the victim's two
    # (the failed one, then the one after the back-off), one sidecar each.
    rows = {r.key: r for r in ledger.rows("probe")}
    assert {k: r.state for k, r in rows.items()} == dict.fromkeys(KEYS, "done")
    assert {k: r.attempts for k, r in rows.items()} == {**dict.fromkeys(KEYS, 1), VICTIM: 2}
    sidecars = [s for s in iter_sidecars(ReleaseLayout(root)) if s.get("phase") == "probe"]
    assert sorted(s["key"] for s in sidecars) == KEYS
    assert all(s["state"] == "done" for s in sidecars)
    # The outputs equal the undisturbed run's, value for value; nothing temporary is left.
    got = tables(root, KEYS)
    for key in KEYS:
        assert got[key].dtype == undisturbed[key].dtype
        for column in ("i", "x", "y"):
            np.testing.assert_array_equal(got[key][column], undisturbed[key][column])
    assert leftovers(root) == []
    # What the user sees: the wait and the resubmission, and the retry in the ledger.
    victim_out = su.table_of(ReleaseLayout(root), VICTIM)
    lines = [r.getMessage() for r in caplog.records if r.name == "lsdr.flows"]
    waits = [line for line in lines if "waiting" in line and "before resubmitting" in line]
    assert waits and waits[0].startswith(f"probe: {mount} full (0.0 MB free")
    assert f"for {VICTIM}: waiting 0.5s before resubmitting (back-off 1 of 6)" in waits[0]
    assert any(
        line.startswith(f"probe: {mount} has ")
        and line.endswith(f"free again: resubmitting {VICTIM}")
        for line in lines
    ), lines
    [retry] = ledger.infra_retries("probe")
    assert (retry.key, retry.attempt) == (VICTIM, 2)
    assert retry.reason == f"start 1 failed: no space left on device (ENOSPC) writing {victim_out}"


def test_a_disk_that_stays_full_is_a_recorded_infra_failure_naming_path_space_and_fix(
    full_fs: tuple[Path, Path],
) -> None:
    """ENOSPC never relieved: after the back-offs, one infra failure; the other units done."""
    root, filler = full_fs
    mount = filler.parent
    result = run(root, space_backoff="0.1s", space_backoffs=2, space_min_free_mb=1)
    assert result.counts.model_dump() == {"done": 3, "cached": 0, "failed": 1}
    victim_out = su.table_of(ReleaseLayout(root), VICTIM)
    [(key, cls, message)] = result.failed
    assert (key, cls) == (VICTIM, "infra")
    assert message == (
        f"no space left on device writing {victim_out}: {mount} has 0.0 MB free after waiting "
        f"0.3s (space_min_free_mb 1): free space on {mount} or move the release to a larger "
        "file system, then run the phase again"
    )
    rows = {r.key: r for r in ledger_for(settings_for(str(root), None)).rows("probe")}
    assert {k: r.state for k, r in rows.items()} == {
        **dict.fromkeys(KEYS, "done"),
        VICTIM: "failed",
    }
    assert rows[VICTIM].failure_class == "infra" and rows[VICTIM].message == message
    assert rows[VICTIM].attempts == 1  # never resubmitted onto a full disk
    # No partial output: the full file system holds only the filler; no temporary file.
    assert sorted(p.name for p in mount.iterdir()) == ["filler.bin"]
    assert leftovers(root) == []
    assert all(su.table_of(ReleaseLayout(root), k).is_file() for k in KEYS if k != VICTIM)


def test_a_read_only_output_directory_is_environment_naming_the_path(
    tmp_path: Path, cluster: None
) -> None:
    """EROFS: a tmpfs remounted read-only; the unit fails ``environment``, the others complete."""
    root = make_release(tmp_path / "release")
    out = su.table_of(ReleaseLayout(root), VICTIM)
    with su.tmpfs(out.parent, "1m") as mount:
        su.read_only(mount)
        result = run(root)
        assert list(mount.iterdir()) == []
    assert result.counts.model_dump() == {"done": 3, "cached": 0, "failed": 1}
    assert result.failed == [
        (
            VICTIM,
            "environment",
            f"read-only file system: {out} (EROFS): remount it read-write or move the release "
            "to a writable file system, then rerun",
        )
    ]
    assert leftovers(root) == []


def test_a_missing_input_directory_is_environment_naming_it(tmp_path: Path) -> None:
    """An input directory that is not there (not mounted): ``environment``, naming it."""
    root = make_release(tmp_path / "release")
    gone = tmp_path / "not-mounted"
    unit = Unit("probe", "u9", (str(gone / "u9.dat"),))
    result = execute_unit(su.table_unit, ReleaseLayout(root), unit, "probe-1")
    assert (result.state, result.failure_class) == ("failed", "environment")
    assert result.message == (
        f"directory {gone} does not exist (reading {gone / 'u9.dat'}): mount or restore it, "
        "then rerun"
    )
    # A missing file in a directory that is there stays the data's fault.
    present = Unit("probe", "u8", (str(root / "inputs" / "u8.dat"),))
    again = execute_unit(su.table_unit, ReleaseLayout(root), present, "probe-1")
    assert (again.failure_class, again.message) == (
        "science",
        f"{root / 'inputs' / 'u8.dat'}: input not found",
    )


NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
"""Run a command as ``nobody``: root ignores file modes, so EACCES needs another user."""

AS_NOBODY = """
import json, sys
sys.path.insert(0, sys.argv[3])
import storage_units as su
from pathlib import Path
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.execute import execute_unit
from lsdr.tasks.unit import Unit
unit = Unit("probe", sys.argv[2], (sys.argv[4],))
r = execute_unit(su.table_unit, ReleaseLayout(Path(sys.argv[1])), unit, "probe-1")
print(json.dumps([r.state, r.failure_class, r.message]))
"""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory ``nobody`` may enter (pytest's own are root's, mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix="lsdr-eacces-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=True)


def test_permission_denied_is_environment_naming_the_path(shared_dir: Path) -> None:
    """EACCES, as ``nobody``: an input it may not read, an output directory it may not write."""
    root = shared_dir / "release"
    make_release(root)
    os.chown(root, 65534, 65534)  # the release is nobody's, so its state/ is writable
    secret = root / "inputs" / "u00000.dat"
    secret.chmod(0o600)  # root's
    closed = su.table_of(ReleaseLayout(root), "u00001").parent
    closed.mkdir(parents=True)
    closed.chmod(0o755)  # root's: nobody may not write it
    os.chown(closed.parent, 65534, 65534)  # probe-out/ is nobody's, for the other units
    tests = str(Path(__file__).parent)

    def as_nobody(key: str) -> list[str]:
        argv = [*NOBODY, sys.executable, "-c", AS_NOBODY, str(root), key, tests]
        done = subprocess.run(
            [*argv, str(root / "inputs" / f"{key}.dat")], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        answer: list[str] = json.loads(done.stdout)
        return answer

    assert as_nobody("u00000") == [
        "failed",
        "environment",
        f"permission denied: {secret} (EACCES, uid 65534): give the user running lsdr access "
        "to it, then rerun",
    ]
    assert as_nobody("u00001") == [
        "failed",
        "environment",
        f"permission denied: {closed / 'table.fits'} (EACCES, uid 65534): give the user "
        "running lsdr access to it, then rerun",
    ]
    assert list(closed.iterdir()) == []
    assert as_nobody("u00002")[:2] == ["done", None]  # the same command, a path it may use


def lsdr(
    *args: str, user: list[str] | None = None, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The real CLI, in its own process (as ``user``: a ``setpriv`` prefix; with ``home``)."""
    argv = [*(user or []), sys.executable, "-m", "lsdr", *args]
    env = {**os.environ, **({"HOME": str(home)} if home else {})}
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)


def test_a_read_only_state_dir_is_exit_2_with_one_line(tmp_path: Path) -> None:
    """``state/`` on a read-only mount: ``lsdr run`` exits 2, one line naming it and the fix."""
    root = make_release(tmp_path / "release")
    (root / "images").mkdir()
    state = ReleaseLayout(root).state_dir
    with su.tmpfs(state, "1m") as mount:
        su.read_only(mount)
        done = lsdr("run", "kdtree", "--release-dir", str(root))
        assert list(mount.iterdir()) == []  # nothing written (it could not be, either)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr == (
        f"lsdr: error: {state} is not writable (a read-only file system (EROFS)): lsdr writes "
        f"the release's lock, ledger and logs in {state}; remount it read-write, then rerun\n"
    )


def test_a_state_dir_this_user_may_not_write_is_exit_2_with_one_line(shared_dir: Path) -> None:
    """``state/`` root's, the run as ``nobody`` (EACCES): exit 2, one line, no traceback."""
    root = make_release(shared_dir / "release")
    (root / "images").mkdir()
    state = ReleaseLayout(root).state_dir
    state.mkdir(mode=0o755)
    # HOME: nobody's own is /nonexistent
    done = lsdr("run", "kdtree", "--release-dir", str(root), user=NOBODY, home=shared_dir)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"lsdr: error: {state} is not writable (permission denied to uid 65534 (EACCES)): lsdr "
        f"writes the release's lock, ledger and logs in {state}; give this user write access, "
        "then rerun\n"
    )
    assert list(state.iterdir()) == []


def test_the_space_settings_read_from_the_environment_and_refuse_a_bad_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``LSDR_SPACE_*`` set the back-off; a wait with no unit is one line naming the variable."""
    from lsdr.infra.settings import load_settings
    from lsdr.survey.core.errors import UsageError

    defaults = load_settings(tmp_path)
    assert (defaults.space_backoff, defaults.space_backoffs, defaults.space_min_free_mb) == (
        "1m",
        3,
        1024,
    )
    monkeypatch.setenv("LSDR_SPACE_BACKOFF", "0.5s")
    monkeypatch.setenv("LSDR_SPACE_MIN_FREE_MB", "1")
    s = load_settings(tmp_path)
    assert (s.space_backoff, s.space_min_free_mb) == ("0.5s", 1)
    monkeypatch.setenv("LSDR_SPACE_BACKOFF", "30")
    with pytest.raises(UsageError) as refused:
        load_settings(tmp_path)
    assert str(refused.value) == (
        "LSDR_SPACE_BACKOFF: '30' is not a duration with its unit, as in '110m' or '1h'"
    )
