"""Failures of the environment: a missing program, Python module or shared library.

They are class ``environment``, one line naming what is missing and how to install it, exit
status 3, and retried by the next run once it is installed.

The errors are real: an import of a module that does not exist, an exec of a program that is not
there, a ``ctypes`` load of a missing library, ``lsdr run publish`` with rsync off PATH.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_package import BRICKS, make_release

from lsdr.flows.settings import ledger_for, settings_for
from lsdr.run_report import exit_status
from lsdr.survey.core.errors import MissingDependencyError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.posttractor.checksums import checksum_other, listed_files, repackage_checksums
from lsdr.survey.posttractor.logtars import tar_logs
from lsdr.survey.posttractor.publish import published_tree
from lsdr.tasks.execute import execute_unit
from lsdr.tasks.failures import classify, one_line
from lsdr.tasks.sidecars import settle
from lsdr.tasks.unit import Unit, UnitOutput

NO_SUCH_MODULE = "lsdr_no_such_module_7f3a"
NO_SUCH_TOOL = "lsdr-no-such-tool-7f3a"
NO_SUCH_LIBRARY = "liblsdr-no-such-library-7f3a.so.1"


def raised(action: object) -> BaseException:
    """The exception a callable raises (with its traceback, as a unit's ``except`` sees it)."""
    assert callable(action)
    try:
        action()
    except Exception as err:
        return err
    raise AssertionError(f"{action} raised nothing")


# -- classify and one_line on real errors ------------------------------------------------------
def test_a_module_that_does_not_exist_is_environment_with_the_pip_command() -> None:
    """A real ModuleNotFoundError: the module is named, and pip into this venv installs it."""
    err = raised(lambda: importlib.import_module(NO_SUCH_MODULE))
    assert type(err) is ModuleNotFoundError
    assert classify(err) == "environment"
    assert one_line(err) == (
        f"Python module {NO_SUCH_MODULE} not importable (No module named '{NO_SUCH_MODULE}'): "
        f"install it with '{sys.executable} -m pip install {NO_SUCH_MODULE}'"
    )


def test_astrometry_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """astrometry.net's Python module comes from Debian, not pip (made unimportable here)."""
    monkeypatch.setitem(sys.modules, "astrometry", None)  # import raises ModuleNotFoundError
    err = raised(lambda: importlib.import_module("astrometry"))
    assert type(err) is ModuleNotFoundError
    assert classify(err) == "environment"
    assert one_line(err) == (
        "Python module astrometry not importable (import of astrometry halted; None in "
        "sys.modules): install it with 'apt-get install python3-astrometry'"
    )


def test_an_executable_missing_from_path_is_environment_naming_it(tmp_path: Path) -> None:
    """A real exec of a program that is nowhere on PATH; rsync gets its Debian command."""
    err = raised(lambda: subprocess.run([NO_SUCH_TOOL], check=False))
    assert type(err) is FileNotFoundError
    assert classify(err) == "environment"
    assert one_line(err) == (
        f"{NO_SUCH_TOOL} not found on PATH: install the package that provides it, then rerun"
    )
    empty = {"PATH": str(tmp_path)}
    err = raised(lambda: subprocess.run(["rsync", "--version"], env=empty, check=False))
    assert classify(err) == "environment"
    assert one_line(err) == "rsync not found on PATH: install it with 'apt-get install rsync'"


def test_a_setting_pointing_at_a_missing_program_names_the_path(tmp_path: Path) -> None:
    """An absolute executable path that does not exist (a setting pointing at nothing)."""
    missing = tmp_path / "bin" / "python3"
    err = raised(lambda: subprocess.run([str(missing), "-V"], check=False))
    assert classify(err) == "environment"
    assert one_line(err) == f"{missing} not found: install it with 'apt-get install python3'"


def test_a_program_that_cannot_be_executed_is_environment(tmp_path: Path) -> None:
    """No execute bit (PermissionError), or a #! interpreter that is not there (ENOENT)."""
    plain = tmp_path / "tool"
    plain.write_text("#!/bin/sh\necho hi\n")
    plain.chmod(0o644)
    err = raised(lambda: subprocess.run([str(plain)], check=False))
    assert type(err) is PermissionError and classify(err) == "environment"
    assert one_line(err) == (
        f"{plain} cannot be executed (Permission denied): "
        "install the package that provides it, then rerun"
    )
    script = tmp_path / "script"
    script.write_text(f"#!{tmp_path}/no-interpreter\n")
    script.chmod(0o755)
    err = raised(lambda: subprocess.run([str(script)], check=False))
    assert classify(err) == "environment"
    assert one_line(err).startswith(f"{script} cannot be executed (its #! interpreter")


def test_missing_data_files_stay_science(tmp_path: Path) -> None:
    """A missing input file, or a missing working directory for a program, is not the tool."""
    err = raised(lambda: (tmp_path / "image.fits").open("rb"))
    assert classify(err) == "science"
    err = raised(lambda: subprocess.run(["true"], cwd=tmp_path / "nowhere", check=False))
    assert type(err) is FileNotFoundError and classify(err) == "science"


def test_a_shared_library_that_cannot_be_loaded_is_environment() -> None:
    """ctypes' OSError for a library that is not installed names the library."""
    err = raised(lambda: ctypes.CDLL(NO_SUCH_LIBRARY))
    assert classify(err) == "environment"
    assert one_line(err) == (
        f"shared library {NO_SUCH_LIBRARY} cannot be loaded ({NO_SUCH_LIBRARY}: cannot open "
        "shared object file: No such file or directory): "
        "install the package that provides it, then rerun"
    )


def test_the_exception_carries_what_is_missing_and_its_install_command() -> None:
    """MissingDependencyError: one line, its parts, class environment; it pickles."""
    err = MissingDependencyError("executable", "rsync")
    assert (err.kind, err.missing, err.install) == ("executable", "rsync", "apt-get install rsync")
    assert str(err) == "rsync not found on PATH: install it with 'apt-get install rsync'"
    assert classify(err) == "environment" and one_line(err) == str(err)
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is MissingDependencyError and str(again) == str(err)
    module = MissingDependencyError("module", "astrometry", reason="No module named 'astrometry'")
    assert str(module) == (
        "Python module astrometry not importable (No module named 'astrometry'): "
        "install it with 'apt-get install python3-astrometry'"
    )


OOM_IMPORT = """
import json, sys
from lsdr.tasks.failures import classify, one_line
from lsdr.tasks.sandbox import memory_limit
try:
    with memory_limit(int(sys.argv[1])):
        import scipy.linalg
except Exception as err:
    print(json.dumps([type(err).__name__, classify(err), one_line(err)]))
"""


def test_an_import_out_of_address_space_is_still_oom() -> None:
    """A real late import under a memory limit fails with an ImportError: ``oom``, not missing.

    Each limit runs in a fresh process (scipy.linalg not imported yet); the smallest limits may
    fail in Python's own allocations (MemoryError) instead, so at least one must be the loader's.
    """
    outcomes = []
    for limit_mb in (1, 5, 20):
        proc = subprocess.run(
            [sys.executable, "-c", OOM_IMPORT, str(limit_mb)],
            capture_output=True,
            text=True,
            check=True,
        )
        outcomes.append(json.loads(proc.stdout))
    imports = [o for o in outcomes if o[0] == "ImportError"]
    assert imports, outcomes
    for name, cls, message in outcomes:
        assert cls == "oom" and message.startswith(f"out of memory ({name}"), outcomes
    assert all("failed to map segment" in message for _, _, message in imports)


# -- policy: not retried blindly, retried by the next run -----------------------------------------
def run_missing_tool(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """A unit whose program is not installed."""
    subprocess.run([NO_SUCH_TOOL, unit.key], check=True)
    return UnitOutput(())


def read_missing_file(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """A unit whose input is unreadable (science)."""
    Path(unit.inputs[0]).read_bytes()
    return UnitOutput(())


def test_an_environment_failure_is_rerun_by_the_next_run_a_science_one_is_not(
    tmp_path: Path,
) -> None:
    """The sidecar records both failures; only the science one settles the next run's plan."""
    layout = ReleaseLayout(tmp_path)
    env_unit = Unit("probe", "tool", ())
    sci_unit = Unit("probe", "data", (str(tmp_path / "missing.dat"),))
    env = execute_unit(run_missing_tool, layout, env_unit, "v1")
    sci = execute_unit(read_missing_file, layout, sci_unit, "v1")
    assert (env.state, env.failure_class) == ("failed", "environment")
    assert env.message == (
        f"{NO_SUCH_TOOL} not found on PATH: install the package that provides it, then rerun"
    )
    assert (sci.state, sci.failure_class) == ("failed", "science")
    assert settle(layout, env_unit, "v1").result is None
    settled = settle(layout, sci_unit, "v1").result
    assert settled is not None and settled.failure_class == "science"


def test_exit_status_is_3_only_when_every_failure_is_the_environment() -> None:
    """0 done, 1 with any failure of the data or the run, 3 with the environment's alone."""
    assert exit_status([]) == 0
    assert exit_status(["environment", "environment"]) == 3
    assert exit_status(["environment", "science"]) == 1
    assert exit_status(["oom"]) == 1


# -- end to end: `lsdr run publish` with rsync off PATH -------------------------------------------
def lsdr(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run this venv's ``lsdr`` (the session's Prefect server via the env), PATH optionally set."""
    env = dict(os.environ) if path is None else {**os.environ, "PATH": path}
    command = [sys.executable, "-m", "lsdr", *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=900, check=False
    )


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_publish_without_rsync_is_environment_exit_3_then_publishes_once_installed(
    prefect_api: str, tmp_path: Path
) -> None:
    """rsync off PATH: exit 3, the unit recorded ``environment`` naming rsync and its package.

    With PATH restored, the same command retries it and publishes every checksummed file.
    """
    assert shutil.which("rsync"), "rsync must be installed for this test: `make rsync`"
    release = make_release(tmp_path / "rel")
    # Its stand-ins for unpublished files are not for running: a real settings file, no ledger.
    (release.root / "lsdr.yaml").write_text("n_workers: 1\n")
    (release.state_dir / "ledger.sqlite").unlink()
    tar_logs(release, "180")
    sums = [*repackage_checksums(release, BRICKS), *checksum_other(release)]
    expected = {p.relative_to(release.root).as_posix() for p in [*listed_files(sums), *sums]}
    dest = tmp_path / "published"
    no_rsync = str(Path(sys.executable).parent)  # the venv's bin: python, lsdr; no rsync
    assert shutil.which("rsync", path=no_rsync) is None
    publish = ("run", "publish", "--release-dir", str(release.root), "--destination", str(dest))
    want = "rsync not found on PATH: install it with 'apt-get install rsync'"

    dry = lsdr(*publish, "--dry-run", path=no_rsync)
    assert dry.returncode == 3, dry.stdout[-2000:] + dry.stderr[-3000:]
    assert f"lsdr: error: {want}" in dry.stderr.splitlines()

    first = lsdr(*publish, path=no_rsync)
    assert first.returncode == 3, first.stdout[-2000:] + first.stderr[-3000:]
    lines = first.stdout.splitlines()
    assert "publish: 0 done, 0 already done, 1 failed" in lines
    assert f"  FAILED {dest} [environment]: {want}" in lines
    assert (
        "1 unit(s) failed because of the environment: install what is named above, then rerun."
        in lines
    )
    assert not dest.exists()

    status = lsdr("status", "--release-dir", str(release.root))
    assert status.returncode == 0, status.stderr[-2000:]
    assert f"FAILED publish {dest} [environment, 1 start(s)]: {want}" in status.stdout
    assert "failed units by class: environment 1" in status.stdout.splitlines()
    ledger = ledger_for(settings_for(str(release.root), None))
    [failed] = ledger.failed("publish")
    assert (failed.key, failed.failure_class, failed.message) == (str(dest), "environment", want)

    again = lsdr(*publish)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert "publish: 1 done, 0 already done, 0 failed" in again.stdout.splitlines()
    assert published_tree(dest) == expected
    row = ledger.get("publish", str(dest))
    assert row is not None
    assert (row.state, row.failure_class, row.attempts) == ("done", None, 2)
    assert ledger.failed("publish") == []
