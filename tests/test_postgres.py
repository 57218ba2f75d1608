"""PostgreSQL from infra/scripts/start-postgres.sh, and the Prefect server running on it."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from pg import START, PostgresCluster, postgres, postgres_url
from test_prefect_server import flow_process, wait_recorded

from lsdr.infra.prefect_server import redact_url, running_server, server_status

__all__ = ["postgres", "postgres_url"]  # fixtures used by the tests below

pytestmark = pytest.mark.slow


async def current_database(url: str) -> str:
    """Connect over TCP with the password and ask which database we are in."""
    connection = await asyncpg.connect(url, timeout=10)
    try:
        return str(await connection.fetchval("SELECT current_database()"))
    finally:
        await connection.close()


def test_script_creates_both_databases(postgres: PostgresCluster) -> None:
    """It creates the Prefect and ledger databases, reachable on 127.0.0.1 with the password."""
    for db in ("prefect", "lsdr_ledger"):
        assert asyncio.run(current_database(postgres.url(db, driver=None))) == db
    assert postgres.urls["PREFECT_DATABASE_URL"] == postgres.url("prefect")
    assert postgres.urls["LSDR_LEDGER_URL"] == postgres.url("lsdr_ledger", driver=None)


def test_script_is_idempotent(postgres: PostgresCluster) -> None:
    """A second run against the running cluster changes nothing and prints the same URLs."""
    again = subprocess.run(
        ["bash", str(START), str(postgres.data_dir), str(postgres.port)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"PREFECT_DATABASE_URL={postgres.url('prefect')}" in again.stdout.splitlines()
    assert "already running" in again.stderr


def test_script_refuses_other_port_while_running(postgres: PostgresCluster) -> None:
    """It exits 2 naming the running port rather than silently ignoring a new one."""
    other = subprocess.run(
        ["bash", str(START), str(postgres.data_dir), str(postgres.port + 1)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert other.returncode == 2
    assert f"already runs on port {postgres.port}" in other.stderr


def test_prefect_server_on_postgres_records_task_runs(
    tmp_path: Path, postgres_url: Callable[..., str]
) -> None:
    """The release's server runs on PostgreSQL and records every task run of a flow."""
    url = postgres_url("prefect")
    state = tmp_path / "state"
    with running_server(state, database_url=url) as info:
        assert info.database_url == url
        assert server_status(state) == info
        assert "***" in redact_url(info.database_url)
        assert not (state / "prefect.db").exists()
        result = flow_process(info, 200)
        total, completed = wait_recorded(info, str(result["flow_run_id"]), 200, timeout=60)
    assert (total, completed) == (200, 200)
