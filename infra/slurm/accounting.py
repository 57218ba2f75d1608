"""The local SLURM's accounting: a private MariaDB and ``slurmdbd``, so ``sacct`` knows every job.

Without an accounting database SLURM forgets a job minutes after it ends, and ``sacct`` (what
the cookbook and the tests ask which jobs ran, how they ended, how long they took) has nothing
to say.  This starts MariaDB on its own data directory, socket and port under the cluster's
root (never the machine's ``/var/lib/mysql``) and ``slurmdbd`` on top of it, and registers the
cluster.  The database password is generated once and kept only in ``slurmdbd.conf`` (mode
600, as ``slurmdbd`` requires).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lsdr.infra.slurm.daemons import running_pid, start_daemon, wait_for_pid
from lsdr.survey.core.errors import UsageError

DB_PORT = 6820
"""MariaDB's TCP port (127.0.0.1 only): next to slurmdbd's 6819, clear of a system MySQL."""
DBD_PORT = 6819
"""``slurmdbd``'s port (SLURM's default)."""
DB_NAME = "slurm_acct_db"
"""The accounting database ``slurmdbd`` creates."""
DB_USER = "slurm"
"""The database user ``slurmdbd`` connects as."""
CLUSTER = "lsdr"
"""The cluster's name in ``slurm.conf`` and in the accounting database."""
READY_TIMEOUT_S = 60.0
"""How long a start waits for MariaDB or ``slurmdbd`` to answer."""


@dataclass(frozen=True)
class AccountedJob:
    """One job as ``sacct`` reports it (allocations only, not steps)."""

    job_id: str
    name: str
    state: str
    elapsed: str
    node: str
    exit_code: str


@dataclass(frozen=True)
class Accounting:
    """MariaDB and ``slurmdbd`` for the local cluster whose files live under ``root``."""

    root: Path

    @property
    def data_dir(self) -> Path:
        """MariaDB's data directory."""
        return self.root / "mysql"

    @property
    def socket(self) -> Path:
        """MariaDB's socket (root's administration: users and grants)."""
        return self.root / "run" / "mysqld.sock"

    @property
    def conf(self) -> Path:
        """``slurmdbd.conf``, next to ``slurm.conf`` where ``slurmdbd`` looks for it."""
        return self.root / "slurmdbd.conf"

    def pid_file(self, daemon: str) -> Path:
        """The PID file of ``mariadbd`` or ``slurmdbd``."""
        return self.root / "run" / f"{daemon}.pid"

    def alive(self, daemon: str) -> int | None:
        """The daemon's PID when it runs, else None."""
        return running_pid(self.pid_file(daemon))

    def slurm_conf_lines(self) -> list[str]:
        """What ``slurm.conf`` needs to send job records to this ``slurmdbd``."""
        return [
            "AccountingStorageType=accounting_storage/slurmdbd",
            "AccountingStorageHost=localhost",
            f"AccountingStoragePort={DBD_PORT}",
            "JobAcctGatherType=jobacct_gather/linux",
            "JobAcctGatherFrequency=30",
        ]

    def start(self, env: Mapping[str, str]) -> dict[str, int]:
        """Start MariaDB and ``slurmdbd`` unless they run, register the cluster; PIDs started."""
        started: dict[str, int] = {}
        if self.alive("mariadbd") is None:
            started["mariadbd"] = self._start_mariadb()
        self._grant(self._password())
        self._write_conf(self._password())
        if self.alive("slurmdbd") is None:
            start_daemon("slurmdbd", env, self._log("slurmdbd"))
            started["slurmdbd"] = wait_for_pid(
                "slurmdbd", self.pid_file("slurmdbd"), self._log("slurmdbd"), READY_TIMEOUT_S
            )
        self._register_cluster(env)
        return started

    # -- MariaDB ------------------------------------------------------------------------------
    def _start_mariadb(self) -> int:
        for sub in ("run", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        if not (self.data_dir / "mysql").is_dir():
            done = subprocess.run(
                [
                    "mariadb-install-db",
                    "--user=root",
                    f"--datadir={self.data_dir}",
                    "--skip-test-db",
                    "--auth-root-authentication-method=socket",
                ],
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
            if done.returncode != 0:
                raise UsageError(
                    f"mariadb-install-db failed for {self.data_dir} (exit {done.returncode}): "
                    f"{(done.stderr or done.stdout).strip()[-300:]}"
                )
        argv = [
            shutil.which("mariadbd") or "/usr/sbin/mariadbd",
            "--no-defaults",
            "--user=root",
            f"--datadir={self.data_dir}",
            f"--socket={self.socket}",
            f"--port={DB_PORT}",
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=64M",
            f"--pid-file={self.pid_file('mariadbd')}",
            f"--log-error={self._log('mariadbd')}",
        ]
        with open(os.devnull, "wb") as null:
            subprocess.Popen(argv, stdin=null, stdout=null, stderr=null, start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._sql("SELECT 1").returncode == 0 and self.alive("mariadbd") is not None:
                pid = self.alive("mariadbd")
                assert pid is not None
                return pid
            time.sleep(0.3)
        raise UsageError(f"MariaDB did not answer on {self.socket}; see {self._log('mariadbd')}")

    def _sql(self, statement: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={self.socket}", "-u", "root", "-e", statement],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    def _grant(self, password: str) -> None:
        user = f"'{DB_USER}'@'127.0.0.1'"
        done = self._sql(
            f"CREATE USER IF NOT EXISTS {user} IDENTIFIED BY '{password}'; "
            f"ALTER USER {user} IDENTIFIED BY '{password}'; "
            f"GRANT ALL ON {DB_NAME}.* TO {user}; FLUSH PRIVILEGES;"
        )
        if done.returncode != 0:
            raise UsageError(
                f"could not create the accounting user in MariaDB ({self.socket}): "
                f"{done.stderr.strip()[:300]}"
            )

    # -- slurmdbd -----------------------------------------------------------------------------
    def _password(self) -> str:
        """The database password: the one in ``slurmdbd.conf``, or a new one."""
        try:
            found = re.search(r"^StoragePass=(\w+)$", self.conf.read_text(), re.MULTILINE)
        except OSError:
            found = None
        if found:
            return found.group(1)
        password = secrets.token_hex(16)
        self._write_conf(password)
        return password

    def _write_conf(self, password: str) -> None:
        lines = [
            "DbdHost=localhost",
            "DbdAddr=127.0.0.1",
            f"DbdPort={DBD_PORT}",
            "SlurmUser=root",
            "AuthType=auth/munge",
            "StorageType=accounting_storage/mysql",
            "StorageHost=127.0.0.1",
            f"StoragePort={DB_PORT}",
            f"StorageUser={DB_USER}",
            f"StoragePass={password}",
            f"StorageLoc={DB_NAME}",
            f"PidFile={self.pid_file('slurmdbd')}",
            f"LogFile={self._log('slurmdbd')}",
        ]
        text = "\n".join(lines) + "\n"
        if self.conf.exists() and self.conf.read_text() == text:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.conf.with_name(f"tmp-{os.getpid()}-slurmdbd.conf")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        tmp.replace(self.conf)

    def _register_cluster(self, env: Mapping[str, str]) -> None:
        """Add the cluster to the database once ``slurmdbd`` answers (fine when it is there)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        last = ""
        while time.monotonic() < deadline:
            listed = subprocess.run(
                ["sacctmgr", "-n", "-P", "list", "cluster", "format=Cluster"],
                env=dict(env),
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
            )
            if listed.returncode == 0:
                if CLUSTER in listed.stdout.split():
                    return
                subprocess.run(
                    ["sacctmgr", "-i", "add", "cluster", CLUSTER],
                    env=dict(env),
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=30,
                )
            last = (listed.stderr or listed.stdout).strip()
            time.sleep(0.5)
        raise UsageError(
            f"slurmdbd did not register cluster {CLUSTER!r}: {last[:300]}; "
            f"see {self._log('slurmdbd')}"
        )

    def _log(self, daemon: str) -> Path:
        return self.root / "log" / f"{daemon}.log"


def accounted_jobs(
    env: Mapping[str, str], name: str | None = None, since: str = "now-1days"
) -> list[AccountedJob] | None:
    """The jobs ``sacct`` knows (allocations only), optionally only those named ``name``.

    None when ``sacct`` cannot answer (no accounting database behind the cluster).
    """
    argv = [
        "sacct",
        "-n",
        "-P",
        "-X",
        "-S",
        since,
        "-o",
        "JobID,JobName%60,State,Elapsed,NodeList,ExitCode",
    ]
    if name is not None:
        argv += ["--name", name]
    done = subprocess.run(argv, env=dict(env), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None
    out = []
    for line in done.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 6:
            out.append(AccountedJob(*parts))
    return out
