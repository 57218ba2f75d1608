"""``lsdr server``: start, stop and find the release's own Prefect server.

Mounted by ``lsdr/cli.py`` as ``lsdr server …``.  Every command takes the release directory; the
server's files live in its ``state/`` directory.  ``status``, ``url`` and ``down`` refuse a
directory that is not a release and create nothing.  Errors print one line and exit with status 2.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

from lsdr.infra.errors import InfraError
from lsdr.infra.prefect_server import (
    ServerInfo,
    ended_server,
    redact_url,
    server_status,
    start_server,
    stop_server,
)
from lsdr.survey.core.errors import SurveyError, UsageError
from lsdr.survey.core.layout import ReleaseLayout, check_release_dir

app = typer.Typer(
    help="The release's Prefect server (SQLite in state/, or PostgreSQL): up, down, status, url.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ReleaseDir = Annotated[
    Path,
    typer.Option("--release-dir", help="Release directory; the server lives in its state/."),
]

P = ParamSpec("P")
R = TypeVar("R")


def one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn lsdr's errors into one line on stderr and exit status 2, never a traceback."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (SurveyError, InfraError) as err:
            message = str(err)
            first, _, rest = message.partition("\n")
            print(f"lsdr: error: {first}", file=sys.stderr)
            if rest:  # a server log tail quoted by the error: context, after the one line
                print(rest, file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper


def state_dir_of(release_dir: Path, *, release: bool = True) -> Path:
    """The state directory of a release (:func:`check_release_dir`).

    Without ``release`` (for ``up``, whose server makes any existing directory a release by
    writing its ``state/``) the directory need only exist.
    """
    if release:
        return check_release_dir(release_dir).state_dir
    if not release_dir.is_dir():
        raise UsageError(f"release directory {release_dir} does not exist")
    return ReleaseLayout(release_dir).state_dir


def describe(info: ServerInfo) -> str:
    """One line about a running server, its database password hidden."""
    return (
        f"Prefect server running at {info.url} (pid {info.pid}, database "
        f"{redact_url(info.database_url)}, log {info.log})"
    )


def export_line(info: ServerInfo) -> str:
    """The shell line that points Prefect clients at the server."""
    return f"export PREFECT_API_URL={shlex.quote(info.url)}"


@app.command()
@one_line_errors
def up(
    release_dir: ReleaseDir,
    port: Annotated[
        int | None, typer.Option("--port", help="TCP port on 127.0.0.1 (default: a free one).")
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="postgresql+asyncpg://user:pw@host:port/db (default: SQLite state/prefect.db).",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the server to answer.")
    ] = 60.0,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to bind (0.0.0.0: every interface; needs "
            "PREFECT_SERVER_API_AUTH_STRING=user:password in the environment).",
        ),
    ] = "127.0.0.1",
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            help="Cluster profile the worker's flow runs use (local, local-slurm, …; default "
            "the release's setting).",
        ),
    ] = None,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker",
            help="Also start the worker on pool 'lsdr' and deploy prefect.yaml (default yes).",
        ),
    ] = True,
    worker_limit: Annotated[
        int,
        typer.Option("--worker-limit", help="Flow runs the worker runs at once (the rest wait)."),
    ] = 4,
) -> None:
    """Start the release's Prefect server, its worker, and deploy (or find what runs)."""
    extra_env: dict[str, str] = {}
    if cluster is not None:
        from lsdr.infra.profiles import get_profile

        get_profile(cluster)
        extra_env["LSDR_CLUSTER"] = cluster
    state = state_dir_of(release_dir, release=False)
    ended = ended_server(state) if state.is_dir() else None
    info = start_server(state, port=port, database_url=database_url, timeout=timeout, host=host)
    if ended is not None:
        again = "the same port" if info.port == ended.port else f"port {info.port} (its own taken)"
        print(
            f"the Prefect server of {release_dir} (pid {ended.pid}) had ended without "
            f"'lsdr server down': started again on {again} and database"
        )
    print(describe(info))
    if worker:
        from lsdr.infra.prefect_worker import deploy, start_worker

        running = start_worker(state, info, extra_env, limit=worker_limit)
        print(f"Prefect worker on pool {running.pool} (pid {running.pid}, log {running.log})")
        names = deployed_names(deploy(info, release_dir, extra_env))
        print(f"deployed {len(names)}: {', '.join(names)}")
    print(export_line(info))


def deployed_names(output: str) -> list[str]:
    """The deployments ``prefect deploy`` reports created or updated (``flow/name``)."""
    import re

    return re.findall(r"Deployment '([^']+)' successfully", " ".join(output.split()))


@app.command()
@one_line_errors
def down(release_dir: ReleaseDir) -> None:
    """Stop the release's Prefect worker and server (what up started, by their records)."""
    from lsdr.infra.prefect_worker import stop_worker

    state = state_dir_of(release_dir)
    if stop_worker(state):
        print(f"Prefect worker of {release_dir} stopped")
    if stop_server(state):
        print(f"Prefect server of {release_dir} stopped")
    else:
        print(f"no Prefect server was running for {release_dir}")


@app.command()
@one_line_errors
def status(release_dir: ReleaseDir) -> None:
    """Say whether the release's Prefect server is running (exit status 1 if not)."""
    from lsdr.infra.prefect_worker import worker_status

    state = state_dir_of(release_dir)
    info = server_status(state)
    if info is None:
        ended = ended_server(state)
        if ended is None:
            print(f"no Prefect server running for {release_dir}")
        else:
            print(
                f"the Prefect server of {release_dir} is down: pid {ended.pid} ({ended.url}) "
                f"ended without 'lsdr server down'; 'lsdr server up --release-dir {release_dir}' "
                f"starts it again on port {ended.port} with database "
                f"{redact_url(ended.database_url)}"
            )
        raise typer.Exit(1)
    print(describe(info))
    running = worker_status(state)
    if running is None:
        print("no Prefect worker running (deployed runs wait: lsdr server up starts one)")
    else:
        print(f"Prefect worker on pool {running.pool} (pid {running.pid}, log {running.log})")
    print(export_line(info))


@app.command()
@one_line_errors
def url(release_dir: ReleaseDir) -> None:
    """Print the API URL of the release's running Prefect server (for PREFECT_API_URL)."""
    info = server_status(state_dir_of(release_dir))
    if info is None:
        raise UsageError(f"no Prefect server running for {release_dir}; start it: lsdr server up")
    print(info.url)
