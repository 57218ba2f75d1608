"""The release's own Prefect server: start, find, stop, and the environment its clients need.

Flows and Dask workers of a release talk to one long-lived ``prefect server start`` process that
lsdr starts itself, never to an ephemeral server per process (each costs ~8 s and a database of
its own).  Everything the server needs lives in the release's state directory
(``<release>/state/``): its Prefect home, its SQLite database ``prefect.db`` (or a PostgreSQL URL),
the record of the running server ``server.json`` and its log ``prefect-server.log``.

The server's settings are built in one place, :func:`server_environment`.  The task-run recorder's
batch sizes are raised there: with Prefect's default of one event per insert the server silently
drops task-run records at a few thousand fast task runs (research/prefect-measurements.md, P1).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from lsdr.infra.errors import ServerError
from lsdr.infra.processes import alive_reaping, start_detached, terminate_group
from lsdr.survey.core.errors import UsageError
from lsdr.survey.core.fileio import write_text_atomic
from lsdr.survey.core.layout import StateLayout

HOST = "127.0.0.1"
"""The server binds to the loopback interface unless told otherwise (and then needs auth)."""
LOOPBACK = ("127.0.0.1", "localhost", "::1")
"""Addresses reachable from this host only: the server needs no authentication there."""
AUTH_ENV = "PREFECT_SERVER_API_AUTH_STRING"
"""Where an exposed server's ``user:password`` comes from (the environment, never a file)."""
CLIENT_AUTH_ENV = "PREFECT_API_AUTH_STRING"
"""What Prefect's clients send to a server with basic authentication."""

RECORDER_BATCH_SIZE = 200
"""Task-run recorder batch and read-batch size; Prefect's default (1) drops records (P1)."""
STOP_GRACE_SECONDS = 20.0
"""How long a stopping server gets after SIGTERM before its process group is killed."""
LOG_TAIL_LINES = 25


@dataclass(frozen=True)
class ServerInfo:
    """A running Prefect server of a release: where to reach it and what it stores into."""

    url: str
    """API URL, ``http://127.0.0.1:<port>/api``."""
    pid: int
    """Process id (and process group id) of ``prefect server start``."""
    database_url: str
    """``sqlite+aiosqlite:///<state>/prefect.db`` or ``postgresql+asyncpg://…``."""
    log: Path
    """The server's log file."""

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        port = urlsplit(self.url).port
        assert port is not None
        return port


def sqlite_database_url(state_dir: Path) -> str:
    """The default database: ``prefect.db`` in the state directory, through aiosqlite."""
    return f"sqlite+aiosqlite:///{StateLayout(Path(state_dir).absolute()).server_database}"


def redact_url(url: str) -> str:
    """A database URL with its password replaced by ``***``, for printing and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def _check_database_url(database_url: str) -> str:
    scheme = urlsplit(database_url).scheme
    if scheme not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise UsageError(
            f"database URL {redact_url(database_url)!r}: Prefect needs an async driver, "
            "'sqlite+aiosqlite:///…' or 'postgresql+asyncpg://…'"
        )
    return database_url


def server_environment(
    state_dir: Path, *, port: int, database_url: str | None = None, host: str = HOST
) -> dict[str, str]:
    """Every ``PREFECT_*`` setting the server process gets; the one place they live.

    The caller's own ``PREFECT_*`` variables are not inherited (see :func:`caller_environment`),
    so a stray ``PREFECT_API_URL`` or profile cannot change what the server is; only the basic
    authentication string (:data:`AUTH_ENV`), which a server bound beyond loopback requires.
    """
    state_dir = Path(state_dir).absolute()
    state = StateLayout(state_dir)
    check_exposure(host)
    auth = {AUTH_ENV: os.environ[AUTH_ENV]} if os.environ.get(AUTH_ENV) else {}
    return {
        **auth,
        "PREFECT_HOME": str(state.prefect_home),
        "PREFECT_PROFILES_PATH": str(state.prefect_profiles),
        "PREFECT_SERVER_API_HOST": host,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": _check_database_url(
            database_url or sqlite_database_url(state_dir)
        ),
        # P1: the recorder's default batch of one event drops task runs beyond ~30/s.  The event
        # persister's and triggers' batch sizes stay at their defaults: raising them on SQLite
        # made recording worse in the measurements.
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": str(RECORDER_BATCH_SIZE),
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": str(RECORDER_BATCH_SIZE),
        # The machines are offline; analytics only log a telemetry traceback.
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "true",
        "PREFECT_UI_API_URL": api_url(port),
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        # A server never starts a second, ephemeral one for its own client calls.
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
        "PREFECT_API_URL": api_url(port),
    }


def check_exposure(host: str) -> None:
    """A ``host`` beyond loopback needs :data:`AUTH_ENV` in the environment: else one line."""
    if host not in LOOPBACK and not os.environ.get(AUTH_ENV):
        raise UsageError(
            f"refusing to expose the Prefect server on {host} without authentication: export "
            f"{AUTH_ENV}=user:password (from your secret store), or leave out --host"
        )


def client_auth() -> str | None:
    """The ``user:password`` a client sends: :data:`CLIENT_AUTH_ENV`, else the server's own."""
    return os.environ.get(CLIENT_AUTH_ENV) or os.environ.get(AUTH_ENV) or None


def client_environment(info: ServerInfo) -> dict[str, str]:
    """What flow processes and Dask workers need to report to this server.

    ``PREFECT_API_URL`` always (without it every process, and every Dask worker, would start an
    ephemeral server of its own); ``PREFECT_HOME`` beside the server's, so that local result
    storage (``$PREFECT_HOME/storage``) is in the release, shared by all nodes.
    """
    state = StateLayout(info.log.parent)
    auth = client_auth()
    return {
        **({CLIENT_AUTH_ENV: auth} if auth else {}),
        "PREFECT_API_URL": info.url,
        "PREFECT_HOME": str(state.prefect_home),
        "PREFECT_PROFILES_PATH": str(state.prefect_profiles),
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


def api_url(port: int) -> str:
    """The API URL of a server on ``port`` of the loopback interface."""
    return f"http://{HOST}:{port}/api"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_free(port: int) -> bool:
    """Whether nothing listens on ``port`` of 127.0.0.1 now (it can be bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    """True when ``<url>/health`` answers 200 (the API is up and its database reachable).

    With the credentials of the environment, if any; a 401 (a server with authentication, asked
    without them) is an answer too: the server is up.
    """
    request = urllib.request.Request(f"{url}/health")
    auth = client_auth()
    if auth:
        token = base64.b64encode(auth.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status) == 200
    except urllib.error.HTTPError as err:
        return err.code == 401
    except (urllib.error.URLError, OSError, ValueError):
        return False


def server_status(state_dir: Path) -> ServerInfo | None:
    """The server recorded in ``state_dir`` if it is running and healthy, else ``None``.

    Read-only: a record whose process is gone (the server crashed, was killed, the machine
    rebooted) stays, so that the next :func:`start_server` starts it on the same port and
    database (:func:`ended_server` reads it).
    """
    state_dir = Path(state_dir).absolute()
    info = _read_record(state_dir)
    if info is None or not _is_our_server(info):
        return None
    return info if is_healthy(info.url) else None


def ended_server(state_dir: Path) -> ServerInfo | None:
    """The server recorded in ``state_dir`` if its process has ended without ``down``, else None."""
    info = _read_record(Path(state_dir).absolute())
    return None if info is None or _is_our_server(info) else info


def start_server(
    state_dir: Path,
    *,
    port: int | None = None,
    database_url: str | None = None,
    timeout: float = 60.0,
    host: str = HOST,
) -> ServerInfo:
    """Start the release's Prefect server detached, wait for it to be healthy, record it.

    Idempotent: when the server recorded in ``state_dir`` is running it is returned (an
    explicit ``port`` or ``database_url`` that differs from it is a usage error).  A recorded
    server whose process ended without ``down`` (a crash) is started again on its port and its
    database, so that clients holding its URL (a worker, a run's Dask workers) find it again
    and its flow runs are still there; its port taken by now, a free one.  Otherwise, without a
    ``port`` a free one is chosen.  A server that does not answer ``/api/health`` within
    ``timeout`` seconds is stopped and the error quotes the tail of its log.  A ``host`` beyond
    loopback (``0.0.0.0``: every interface) needs :data:`AUTH_ENV` in the environment.
    """
    state_dir = Path(state_dir).absolute()
    if database_url is not None:
        _check_database_url(database_url)
    check_exposure(host)
    state_dir.mkdir(parents=True, exist_ok=True)
    with _locked(state_dir):
        info = _read_record(state_dir)
        if info is not None and _is_our_server(info):
            _check_same(info, port, database_url)
            _wait_healthy(info, None, timeout)
            return info
        ended = info  # its process is gone: a crash, a kill, a reboot
        if ended is not None and database_url is None:
            database_url = ended.database_url
        StateLayout(state_dir).server_record.unlink(missing_ok=True)
        attempts = 1 if port is not None else 3
        for attempt in range(attempts):
            if port is not None:
                chosen = port
            elif attempt == 0 and ended is not None and _port_free(ended.port):
                chosen = ended.port
            else:
                chosen = free_port()
            try:
                return _launch(state_dir, chosen, database_url, timeout, host)
            except _PortTakenError:
                if attempt == attempts - 1:
                    raise ServerError(
                        f"Prefect server: port {chosen} on {HOST} is already in use; "
                        "choose another with --port"
                    ) from None
        raise AssertionError("unreachable")


def stop_server(state_dir: Path) -> bool:
    """Stop the server recorded in ``state_dir`` (its whole process group); remove the record.

    Returns True if a running server was stopped, False if none was running.
    """
    state_dir = Path(state_dir).absolute()
    if not state_dir.is_dir():
        return False
    with _locked(state_dir):
        info = _read_record(state_dir)
        stopped = False
        if info is not None and _is_our_server(info):
            terminate_group(info.pid, STOP_GRACE_SECONDS)
            stopped = True
        StateLayout(state_dir).server_record.unlink(missing_ok=True)
        return stopped


@contextmanager
def running_server(state_dir: Path, **kw: Any) -> Iterator[ServerInfo]:
    """Start the server for the block, stop it afterwards (tests, one-off scripts)."""
    info = start_server(state_dir, **kw)
    try:
        yield info
    finally:
        stop_server(state_dir)


# -- internals --------------------------------------------------------------------------------


class _PortTakenError(Exception):
    """The server exited at start because its port was taken (a race with free_port)."""


def caller_environment() -> dict[str, str]:
    """The caller's environment without its ``PREFECT_*`` variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}


def _server_command(port: int, host: str = HOST) -> list[str]:
    return [
        sys.executable,
        "-m",
        "prefect",
        "server",
        "start",
        "--host",
        host,
        "--port",
        str(port),
    ]


def _launch(
    state_dir: Path, port: int, database_url: str | None, timeout: float, host: str = HOST
) -> ServerInfo:
    env = caller_environment()
    env.update(server_environment(state_dir, port=port, database_url=database_url, host=host))
    StateLayout(state_dir).prefect_home.mkdir(exist_ok=True)
    log = StateLayout(state_dir).server_log
    # cwd is the state directory, so a .env or prefect.toml in the caller's working directory
    # cannot change the server's settings.
    process, offset = start_detached(
        _server_command(port, host),
        cwd=state_dir,
        env=env,
        log=log,
        banner=f"starting Prefect server on {api_url(port)}",
    )
    info = ServerInfo(
        url=api_url(port),
        pid=process.pid,
        database_url=env["PREFECT_SERVER_DATABASE_CONNECTION_URL"],
        log=log,
    )
    try:
        _wait_healthy(info, process, timeout, log_offset=offset)
    except BaseException:
        terminate_group(process.pid, 5.0)
        raise
    _write_record(state_dir, info)
    return info


def _wait_healthy(
    info: ServerInfo,
    process: subprocess.Popen[bytes] | None,
    timeout: float,
    log_offset: int = 0,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if is_healthy(info.url, timeout=2.0):
            return
        exited = process.poll() is not None if process is not None else not alive_reaping(info.pid)
        if exited:
            tail = _log_tail(info.log, log_offset)
            if "already in use" in tail and process is not None:
                raise _PortTakenError()
            raise ServerError(
                f"Prefect server (pid {info.pid}) exited before answering {info.url}/health; "
                f"log {info.log}:\n{tail}"
            )
        if time.monotonic() > deadline:
            raise ServerError(
                f"Prefect server (pid {info.pid}) did not answer {info.url}/health within "
                f"{timeout:.0f} s; log {info.log}:\n{_log_tail(info.log, log_offset)}"
            )
        time.sleep(0.25)


def _log_tail(log: Path, offset: int = 0, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with log.open("rb") as stream:
            stream.seek(offset)
            text = stream.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(empty log)"


def _check_same(info: ServerInfo, port: int | None, database_url: str | None) -> None:
    if port is not None and port != info.port:
        raise UsageError(
            f"a Prefect server for this release already runs on port {info.port} (pid "
            f"{info.pid}); stop it first ('lsdr server down') to use port {port}"
        )
    if database_url is not None and database_url != info.database_url:
        raise UsageError(
            f"a Prefect server for this release already runs on {redact_url(info.database_url)} "
            f"(pid {info.pid}); stop it first ('lsdr server down') to use "
            f"{redact_url(database_url)}"
        )


def _write_record(state_dir: Path, info: ServerInfo) -> None:
    record = {
        "url": info.url,
        "port": info.port,
        "pid": info.pid,
        "database_url": info.database_url,
        "log": str(info.log),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.executable,
    }
    path = StateLayout(state_dir).server_record
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")
    path.chmod(0o600)  # the database URL may carry a password


def _read_record(state_dir: Path) -> ServerInfo | None:
    path = StateLayout(state_dir).server_record
    try:
        record = json.loads(path.read_text())
        return ServerInfo(
            url=str(record["url"]),
            pid=int(record["pid"]),
            database_url=str(record["database_url"]),
            log=Path(record["log"]),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ServerError(
            f"{path}: unreadable server record ({err}); remove it if no server is running"
        ) from err


def _is_our_server(info: ServerInfo) -> bool:
    """The recorded pid is alive and (where /proc exists) still our ``prefect server start``."""
    if not alive_reaping(info.pid):
        return False
    cmdline = Path(f"/proc/{info.pid}/cmdline")
    if not cmdline.exists():
        return True
    try:
        args = cmdline.read_bytes().split(b"\0")
    except OSError:
        return False
    return b"server" in args and b"start" in args and str(info.port).encode() in args


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    with StateLayout(state_dir).server_lock.open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
