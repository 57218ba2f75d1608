"""A real PostgreSQL for tests, started by infra/scripts/start-postgres.sh in a temporary directory.

Import the fixtures into a test module (``from pg import postgres, postgres_url``) and ask
``postgres_url("prefect")`` or ``postgres_url("lsdr_ledger", driver=None)`` for a URL.  The cluster
is started once per test session (per xdist worker) and stopped at the end.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lsdr.infra.prefect_server import free_port

SCRIPTS = Path(__file__).resolve().parents[1] / "infra" / "scripts"
START = SCRIPTS / "start-postgres.sh"
STOP = SCRIPTS / "stop-postgres.sh"


@dataclass(frozen=True)
class PostgresCluster:
    """A running cluster: its directory, port and the password of its user ``lsdr``."""

    data_dir: Path
    port: int
    password: str
    urls: dict[str, str]

    def url(self, db: str, driver: str | None = "asyncpg") -> str:
        """URL of database ``db`` for SQLAlchemy (``postgresql+<driver>://``; plain if None)."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://lsdr:{self.password}@127.0.0.1:{self.port}/{db}"


def start_postgres(data_dir: Path, port: int) -> PostgresCluster:
    """Run start-postgres.sh and parse its KEY=VALUE lines; fail with its stderr if it fails."""
    done = subprocess.run(
        ["bash", str(START), str(data_dir), str(port)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"start-postgres.sh failed ({done.returncode}):\n{done.stderr[-3000:]}")
    values = dict(
        line.split("=", 1) for line in done.stdout.splitlines() if "=" in line and line[0] != " "
    )
    return PostgresCluster(
        data_dir=data_dir,
        port=int(values["PGPORT"]),
        password=(data_dir / "password").read_text().strip(),
        urls=values,
    )


def stop_postgres(data_dir: Path) -> None:
    """Run stop-postgres.sh (fast shutdown)."""
    subprocess.run(["bash", str(STOP), str(data_dir)], check=True, timeout=120)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL on 127.0.0.1 with databases ``prefect`` and ``lsdr_ledger``."""
    data_dir = Path(tempfile.mkdtemp(prefix="lsdr-pg-"))
    try:
        cluster = start_postgres(data_dir, free_port())
        try:
            yield cluster
        finally:
            stop_postgres(data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres: PostgresCluster) -> Callable[..., str]:
    """``postgres_url(db, driver="asyncpg") -> str``: a URL of a database of the test cluster."""
    return postgres.url
