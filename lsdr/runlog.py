"""Where a run's log records go: a log file per run in ``state/logs/``, WARNING+ to the console.

The console also gets INFO records with ``--verbose``.  Prefect configures logging in every
process that runs flows or tasks, this one and each Dask worker, from a logging.yml
(``PREFECT_LOGGING_CONFIG_PATH``).  lsdr writes its own, ``state/logs/logging.yml``: Prefect's
default with the root logger's handlers replaced by a console handler at WARNING and the run's
log file, and ``distributed`` and ``lsdr`` logging at INFO through the root (distributed's own
stderr handler goes).  The API handler that sends flow and task logs to the Prefect server stays
as Prefect has it.  The per-run values (the log file, the console level) are Prefect's
environment overrides of that file, ``PREFECT_LOGGING_HANDLERS_…``, so the Dask workers, which
inherit this process's environment, log the same way.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import yaml

from lsdr.survey.core.fileio import write_text_atomic
from lsdr.survey.core.layout import StateLayout

CONFIG_PATH_ENV = "PREFECT_LOGGING_CONFIG_PATH"
FILE_ENV = "PREFECT_LOGGING_HANDLERS_FILE_FILENAME"
CONSOLE_LEVEL_ENV = "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"

FILE_FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(process)d | %(name)s"
"""The log file's line prefix: the date, the level, the process (the CLI's or a worker's)."""


class StderrHandler(logging.StreamHandler[IO[str]]):
    """A handler writing to whatever ``sys.stderr`` is when a record arrives.

    Prefect's console handler keeps the stream it was made with; this one follows
    ``sys.stderr``, so records print above rich's live display, which redirects it.
    """

    def __init__(self, level: int | str = logging.NOTSET) -> None:
        logging.Handler.__init__(self, level)

    @property
    def stream(self) -> IO[str]:
        """The current ``sys.stderr``."""
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        """Ignored: the stream is always the current ``sys.stderr``."""


SHUTDOWN_NOISE = (("distributed.worker", "Failed to communicate with scheduler during heartbeat"),)
"""(logger, message start) of records that are harmless races while a cluster shuts down.

A worker whose heartbeat is in flight when the scheduler closes logs it at ERROR with a
traceback; the run has finished by then.  Were the scheduler really lost mid-run, the flow
itself fails and says so.  These records still go to the run's log file.
"""


class ShutdownNoiseFilter(logging.Filter):
    """Keeps the :data:`SHUTDOWN_NOISE` records off the console (the log file still has them).

    And, while a run is interrupted, the records of the workers being stopped and of the
    flow that stopped (``flows/interrupt.quiet_on_console``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a shutdown-race record, True for every other."""
        from lsdr.flows.interrupt import quiet_on_console

        if quiet_on_console(record):
            return False
        message = str(record.msg)
        return not any(
            record.name == name and message.startswith(start) for name, start in SHUTDOWN_NOISE
        )


def prefect_default_config() -> Path:
    """Prefect's own logging.yml, found without importing Prefect (its settings would freeze)."""
    spec = importlib.util.find_spec("prefect")
    if spec is None or spec.origin is None:
        raise RuntimeError("prefect is not installed")
    return Path(spec.origin).parent / "logging" / "logging.yml"


def logging_config() -> dict[str, Any]:
    """Prefect's logging config with lsdr's console and log-file handlers on the root logger.

    Prefect's ``${PREFECT_…}`` templates are kept for Prefect to fill in when it loads it.
    """
    config: dict[str, Any] = yaml.safe_load(prefect_default_config().read_text())
    standard = config["formatters"]["standard"]
    config["formatters"]["file"] = {
        **standard,
        "format": f"{FILE_FORMAT} - %(message)s",
        "flow_run_fmt": f"{FILE_FORMAT} | Flow run %(flow_run_name)r - %(message)s",
        "task_run_fmt": f"{FILE_FORMAT} | Task run %(task_run_name)r - %(message)s",
        "datefmt": "%Y-%m-%d %H:%M:%S",
    }
    config.setdefault("filters", {})["shutdown_noise"] = {"()": f"{__name__}.ShutdownNoiseFilter"}
    config["handlers"]["console"] = {
        "class": f"{__name__}.StderrHandler",
        "level": "WARNING",
        "formatter": "standard",
        "filters": ["shutdown_noise"],
    }
    config["handlers"]["file"] = {
        "class": "logging.FileHandler",
        "level": "NOTSET",
        "formatter": "file",
        "filename": os.devnull,  # the run's file comes from FILE_ENV
        "delay": True,
        "encoding": "utf-8",
    }
    config["root"]["handlers"] = ["console", "file"]
    config["loggers"]["distributed"] = {"level": "INFO", "handlers": [], "propagate": True}
    config["loggers"]["lsdr"] = {"level": "INFO"}
    return config


def new_log_path(state_dir: Path, now: datetime | None = None) -> Path:
    """Create and return this run's log file, ``state/logs/run-<UTC time>.log`` (never reused)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    log_dir = StateLayout(state_dir).run_logs_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        path = log_dir / (f"run-{stamp}.log" if n == 1 else f"run-{stamp}-{n}.log")
        try:
            path.open("x").close()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{log_dir}: too many runs started at {stamp}")


def route_logs(state_dir: Path, *, verbose: bool = False) -> Path:
    """Send this run's log records to a new log file under ``state_dir``; return its path.

    Call it before Prefect is first imported (as ``connect_prefect``) and before the Dask
    cluster starts: both read the environment set here.  The console gets WARNING and above,
    INFO and above when ``verbose``.
    """
    path = new_log_path(state_dir)
    config = StateLayout(state_dir).run_logging_config
    text = yaml.safe_dump(logging_config(), sort_keys=False, width=1000)
    write_text_atomic(config, f"# Written by lsdr (lsdr/runlog.py) at every run.\n{text}")
    os.environ[CONFIG_PATH_ENV] = str(config)
    os.environ[FILE_ENV] = str(path)
    os.environ[CONSOLE_LEVEL_ENV] = "INFO" if verbose else "WARNING"
    _reconfigure_if_configured(config)
    return path


def _reconfigure_if_configured(config: Path) -> None:
    """Apply the config now if Prefect already set up logging in this process (an embedder)."""
    configuration = sys.modules.get("prefect.logging.configuration")
    if configuration is None or not configuration.PROCESS_LOGGING_CONFIG:
        return
    from prefect.settings import PREFECT_LOGGING_SETTINGS_PATH, temporary_settings

    with temporary_settings(updates={PREFECT_LOGGING_SETTINGS_PATH: config}):
        configuration.setup_logging(incremental=False)
