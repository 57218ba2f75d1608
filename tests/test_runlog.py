"""The run's log routing: INFO records to the run's file, the console only WARNING and up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import logging, sys
from pathlib import Path
from lsdr.runlog import route_logs

path = route_logs(Path(sys.argv[1]), verbose=sys.argv[2] == "verbose")
from prefect import flow  # Prefect sets up logging from lsdr's config now
from prefect.logging.handlers import APILogHandler

print(path)
print(any(isinstance(h, APILogHandler) for h in logging.getLogger("prefect.flow_runs").handlers))
for name in ("prefect.task_runner.dask", "distributed.scheduler", "lsdr.flows"):
    logging.getLogger(name).info("an info record of %s", name)
logging.getLogger("distributed.worker").warning("a warning record")
logging.getLogger("distributed.worker").error(
    "Failed to communicate with scheduler during heartbeat."
)
"""


def probe(state: Path, mode: str) -> subprocess.CompletedProcess[str]:
    """Route a fresh process's logs into ``state`` and emit records from each library."""
    return subprocess.run(
        [sys.executable, "-c", PROBE, str(state), mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_info_records_go_to_the_run_log_and_warnings_also_to_stderr(tmp_path: Path) -> None:
    """The file gets everything; stderr only the warning; Prefect's API handler stays."""
    done = probe(tmp_path, "quiet")
    path_line, api_handler = done.stdout.splitlines()
    run_log = Path(path_line)
    assert run_log.parent == tmp_path / "logs" and run_log.name.startswith("run-")
    assert api_handler == "True"  # flow-run logs still go to the Prefect server
    logged = run_log.read_text()
    for name in ("prefect.task_runner.dask", "distributed.scheduler", "lsdr.flows"):
        assert f"an info record of {name}" in logged
        assert f"an info record of {name}" not in done.stderr
    assert "a warning record" in logged and "a warning record" in done.stderr
    # the heartbeat race of a cluster shutting down: in the file, off the console
    assert "Failed to communicate with scheduler during heartbeat" in logged
    assert "Failed to communicate with scheduler" not in done.stderr


def test_verbose_shows_info_records_on_stderr_and_each_run_has_its_own_file(
    tmp_path: Path,
) -> None:
    """With verbose the INFO records show on stderr too; a second run gets a new file."""
    first = Path(probe(tmp_path, "quiet").stdout.splitlines()[0])
    done = probe(tmp_path, "verbose")
    second = Path(done.stdout.splitlines()[0])
    assert second != first and first.exists() and second.exists()
    for name in ("prefect.task_runner.dask", "distributed.scheduler", "lsdr.flows"):
        assert f"an info record of {name}" in done.stderr
