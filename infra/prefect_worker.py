"""The release's Prefect worker and deployments: what runs the flows clicked in the UI.

``lsdr server up`` starts the release's server (``infra/prefect_server.py``), then this: the
work pool ``lsdr`` (type ``process``), one ``prefect worker start`` polling it, and the
deployments of ``prefect.yaml`` (each phase, the release, nightly, reprocess-region) pointed at
the release (``LSDR_RELEASE_DIR``) and this checkout (``LSDR_REPO_DIR``).  A flow run the
worker picks up is a process of the venv's Python with the worker's environment: the server's
client settings, the cluster profile (``LSDR_CLUSTER``) and whatever the caller exported.
The worker's record (``state/worker.json``) is what ``down`` stops, its output
``state/prefect-worker.log``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsdr.infra.errors import ServerError
from lsdr.infra.prefect_server import (
    ServerInfo,
    caller_environment,
    client_auth,
    client_environment,
)
from lsdr.infra.processes import alive_reaping, start_detached, terminate_group
from lsdr.survey.core.errors import UsageError
from lsdr.survey.core.fileio import write_text_atomic
from lsdr.survey.core.layout import StateLayout

WORK_POOL = "lsdr"
"""The release server's one work pool (each release has a server of its own)."""
POLL_SECONDS = 5
"""How often the worker asks for scheduled runs (Prefect's default, 10 s, doubles the wait)."""
WORKER_LIMIT = 4
"""Flow runs one worker runs at once: more, on a SQLite server, meet 503s (SQLITE_BUSY_SNAPSHOT)
while they start (measured: 16 at once on 2 cores crashed one in submission)."""
CLIENT_RETRIES = 10
"""Retries of a Prefect API call answered 503 (Prefect's default is 5)."""
STOP_GRACE_SECONDS = 10.0
"""A stopping worker's time after SIGTERM (it often ignores the first: research P8)."""
REPO_DIR = Path(__file__).resolve().parents[1]
"""This checkout: where ``prefect.yaml`` and the deployments' entry points are."""
PREFECT_FILE = REPO_DIR / "prefect.yaml"
"""The project's deployments."""
DEFAULT_NIGHTLY_CRON = "0 2 * * *"
"""When the nightly increment runs (02:00 …)."""
DEFAULT_NIGHTLY_TIMEZONE = "UTC"
"""… in this timezone, unless ``LSDR_NIGHTLY_TIMEZONE`` says otherwise."""


@dataclass(frozen=True)
class WorkerInfo:
    """A running worker of a release."""

    pid: int
    pool: str
    log: Path


def worker_environment(info: ServerInfo, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: the caller's, the server's client settings, the fast poll."""
    env = caller_environment()
    env.update(client_environment(info))  # with the credentials, when the server needs them
    env["PREFECT_WORKER_QUERY_SECONDS"] = str(POLL_SECONDS)
    env["PREFECT_CLIENT_MAX_RETRIES"] = str(CLIENT_RETRIES)
    env["LSDR_REPO_DIR"] = str(REPO_DIR)
    env.update(extra or {})
    return env


def worker_status(state_dir: Path) -> WorkerInfo | None:
    """The worker recorded in ``state_dir`` if it runs; a stale record is removed."""
    state = StateLayout(Path(state_dir).absolute())
    try:
        record = json.loads(state.worker_record.read_text())
        info = WorkerInfo(int(record["pid"]), str(record["pool"]), Path(record["log"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ServerError(
            f"{state.worker_record}: unreadable worker record ({err}); remove it if no worker runs"
        ) from err
    if not _is_our_worker(info):
        state.worker_record.unlink(missing_ok=True)
        return None
    return info


def start_worker(
    state_dir: Path,
    server: ServerInfo,
    extra_env: Mapping[str, str] | None = None,
    limit: int = WORKER_LIMIT,
) -> WorkerInfo:
    """Create the work pool and start a worker on it, detached; idempotent (one per release).

    The worker runs at most ``limit`` flow runs at once; the others wait in the pool, Scheduled.
    """
    if limit < 1:
        raise UsageError(f"worker limit {limit}: at least one flow run at a time")
    state_dir = Path(state_dir).absolute()
    running = worker_status(state_dir)
    if running is not None:
        return running
    env = worker_environment(server, extra_env)
    prefect(["work-pool", "create", WORK_POOL, "--type", "process", "--overwrite"], env)
    state = StateLayout(state_dir)
    process, _ = start_detached(
        [
            *(sys.executable, "-m", "prefect", "worker", "start"),
            *("--pool", WORK_POOL, "--limit", str(limit)),
        ],
        cwd=REPO_DIR,
        env=env,
        log=state.worker_log,
        banner=f"worker on pool {WORK_POOL} of {server.url}",
    )
    info = WorkerInfo(process.pid, WORK_POOL, state.worker_log)
    time.sleep(0.5)
    if process.poll() is not None:
        raise ServerError(
            f"the Prefect worker exited at once (status {process.returncode}); see {info.log}"
        )
    record = {"pid": info.pid, "pool": info.pool, "log": str(info.log), "server": server.url}
    write_text_atomic(state.worker_record, json.dumps(record, indent=2) + "\n")
    return info


def stop_worker(state_dir: Path) -> bool:
    """Stop the release's worker (its process group: its flow runs too); True if one ran."""
    state = StateLayout(Path(state_dir).absolute())
    info = worker_status(state.root)
    if info is None:
        return False
    terminate_group(info.pid, STOP_GRACE_SECONDS)
    state.worker_record.unlink(missing_ok=True)
    return True


def deploy(
    server: ServerInfo, release_dir: Path, extra_env: Mapping[str, str] | None = None
) -> str:
    """``prefect deploy --all`` of ``prefect.yaml`` for ``release_dir``; Prefect's output."""
    env = worker_environment(server, extra_env)
    env["LSDR_RELEASE_DIR"] = str(Path(release_dir).absolute())
    env.setdefault("LSDR_NIGHTLY_CRON", DEFAULT_NIGHTLY_CRON)
    env.setdefault("LSDR_NIGHTLY_TIMEZONE", DEFAULT_NIGHTLY_TIMEZONE)
    output = prefect(["--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_FILE)], env)
    close_parameter_schemas(server)
    return output


def close_parameter_schemas(server: ServerInfo) -> int:
    """Make the server refuse a run with a parameter its flow does not take; how many changed.

    ``prefect deploy`` leaves a deployment's parameter schema open at the top level, so the
    server accepts an unknown parameter (201) and the run then crashes in the worker with
    ``Process exited with status code: 1`` (research P7).  With ``additionalProperties: false``
    the server answers ``create_flow_run`` with 409 naming the parameter, and no run exists.
    Nested options models are closed already (``extra="forbid"``).
    """
    import httpx

    user, _, password = (client_auth() or "").partition(":")
    credentials = (user, password) if user else None
    changed = 0
    with httpx.Client(base_url=server.url, auth=credentials, timeout=60.0) as api:
        found = _api_call(api, "POST", "/deployments/filter", {"limit": 200})
        if found.status_code >= 400:
            raise ServerError(f"listing the deployments failed: HTTP {found.status_code}")
        for deployment in found.json():
            schema = dict(deployment["parameter_openapi_schema"] or {})
            if (
                deployment["work_pool_name"] != WORK_POOL
                or schema.get("additionalProperties") is False
            ):
                continue
            schema["additionalProperties"] = False
            body = {"parameter_openapi_schema": schema}
            done = _api_call(api, "PATCH", f"/deployments/{deployment['id']}", body)
            if done.status_code >= 400:
                raise ServerError(
                    f"closing the parameters of deployment {deployment['name']} failed: "
                    f"HTTP {done.status_code} {done.text[:300]}"
                )
            changed += 1
    return changed


def _api_call(api: Any, method: str, path: str, body: Any) -> Any:
    """One REST call, retried while the server answers 503 (its SQLite busy: research P7)."""
    for attempt in range(CLIENT_RETRIES):
        response = api.request(method, path, json=body)
        if response.status_code != 503:
            break
        time.sleep(min(2.0**attempt, 10.0))
    return response


def prefect(args: list[str], env: Mapping[str, str], timeout: float = 300.0) -> str:
    """Run Prefect's CLI from this checkout; its output, or an error quoting its end."""
    done = subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        cwd=REPO_DIR,
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise ServerError(f"prefect {' '.join(args[:3])} failed (exit {done.returncode}):\n{tail}")
    return done.stdout


def _is_our_worker(info: WorkerInfo) -> bool:
    """The recorded pid is alive and still a ``prefect worker start`` on our pool."""
    if not alive_reaping(info.pid):
        return False
    try:
        args = Path(f"/proc/{info.pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return b"worker" in args and info.pool.encode() in args
