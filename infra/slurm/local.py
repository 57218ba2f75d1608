"""A single-node SLURM on this machine, without systemd: installed, configured, started, stopped.

Debian's ``slurm-wlm`` (slurmctld + slurmd) with ``munge`` authentication, as
``../shared/research/local-slurm.md`` measured it: no systemd (the daemons are started
directly and fork themselves), no cgroups; accounting through a private MariaDB and
``slurmdbd`` (:mod:`.accounting`), so ``sacct`` reports every job.  Everything lsdr writes lives
under one directory (``LSDR_SLURM_DIR``, default ``/var/lib/lsdr/slurm``): ``slurm.conf``, the
daemons' spool, logs and PID files, and ``started.json``, the PIDs lsdr started, which ``down``
stops and nothing else.  Commands find the configuration through ``SLURM_CONF``
(:meth:`LocalSlurm.environment`), so a SLURM already configured on the machine is never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lsdr.infra.processes import pid_alive
from lsdr.infra.slurm.accounting import Accounting
from lsdr.infra.slurm.daemons import running_pid, start_daemon, wait_for_pid
from lsdr.survey.core.errors import MissingDependencyError, UsageError

DEFAULT_DIR = Path("/var/lib/lsdr/slurm")
"""Where the local SLURM's files go unless ``LSDR_SLURM_DIR`` says otherwise."""
PARTITION = "lsdr"
"""The one partition of the local cluster (the default one)."""
PACKAGES = ("slurm-wlm", "munge", "slurmdbd", "mariadb-server")
"""Debian packages installed when a daemon is missing (``--no-install-recommends``)."""
DAEMONS = ("slurmctld", "slurmd")
"""The SLURM daemons ``up`` starts, in order (after the accounting's ``mariadbd``, ``slurmdbd``)."""
ACCOUNTING_DAEMONS = ("mariadbd", "slurmdbd")
"""The accounting's daemons, in the order ``up`` starts them."""
MEMORY_SHARE = 0.8
"""Of the machine's memory, what the node offers jobs (the rest: the flow, Prefect, the OS)."""
READY_TIMEOUT_S = 60.0
"""How long ``up`` waits for the node to be idle."""


@dataclass(frozen=True)
class SlurmJob:
    """One job of the local cluster, as ``squeue`` lists it."""

    job_id: str
    name: str
    state: str
    elapsed: str
    node: str


@dataclass(frozen=True)
class SlurmStatus:
    """The local cluster's daemons, its node's state and its jobs."""

    daemons: Mapping[str, int | None]
    node_state: str | None
    jobs: tuple[SlurmJob, ...]

    @property
    def up(self) -> bool:
        """Both daemons alive and the node usable."""
        alive = all(pid is not None for pid in self.daemons.values())  # accounting's too
        return alive and (self.node_state or "").rstrip("*") in ("idle", "mixed", "allocated")


def default_dir() -> Path:
    """``$LSDR_SLURM_DIR`` or :data:`DEFAULT_DIR`."""
    configured = os.environ.get("LSDR_SLURM_DIR")
    return Path(configured) if configured else DEFAULT_DIR


def machine_memory_mb() -> int:
    """The memory of this machine (MB), from ``/proc/meminfo``."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise UsageError("/proc/meminfo has no MemTotal: cannot size the local SLURM node")


@dataclass(frozen=True)
class LocalSlurm:
    """The local cluster whose files live under ``root``."""

    root: Path

    @classmethod
    def default(cls) -> LocalSlurm:
        """The cluster of ``$LSDR_SLURM_DIR`` (default ``/var/lib/lsdr/slurm``)."""
        return cls(default_dir())

    # -- paths --------------------------------------------------------------------------------
    @property
    def conf(self) -> Path:
        """``slurm.conf``: what every SLURM command is pointed at (``SLURM_CONF``)."""
        return self.root / "slurm.conf"

    @property
    def log_dir(self) -> Path:
        """The daemons' logs."""
        return self.root / "log"

    def pid_file(self, daemon: str) -> Path:
        """The PID file a daemon writes."""
        return self.root / "run" / f"{daemon}.pid"

    @property
    def job_record(self) -> Path:
        """Every finished job, one line each (``jobcomp/filetxt``), readable without ``sacct``."""
        return self.log_dir / "jobs.txt"

    @property
    def accounting(self) -> Accounting:
        """The cluster's MariaDB and ``slurmdbd``, under the same root."""
        return Accounting(self.root)

    @property
    def started_record(self) -> Path:
        """``started.json``: the daemons lsdr started, with their PIDs."""
        return self.root / "started.json"

    def environment(self) -> dict[str, str]:
        """What a SLURM command (``sbatch``, ``squeue``) needs to find this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    # -- up -----------------------------------------------------------------------------------
    def up(self) -> SlurmStatus:
        """Install if missing, configure and start the cluster; idempotent (``up`` twice is fine).

        Needs root (slurmd runs jobs as their users).  Returns once the node is idle.
        """
        if os.geteuid() != 0:
            raise UsageError(
                "lsdr slurm up needs root: it starts slurmctld and slurmd (run it as root, or "
                "point SLURM_CONF at an existing cluster)"
            )
        install_if_missing()
        started = self._started()
        munged = start_munge()
        if munged is not None:
            started["munged"] = munged
        changed = self.write_conf()
        env = {**os.environ, **self.environment()}
        started.update(self.accounting.start(env))
        for daemon in DAEMONS:
            pid = self._alive(daemon)
            if pid is not None and changed and started.get(daemon) == pid:
                _stop(pid)  # started by lsdr with an older slurm.conf: restart it on this one
                pid = None
            if pid is None:
                log = self.log_dir / f"{daemon}.log"
                start_daemon(daemon, env, log)
                started[daemon] = wait_for_pid(daemon, self.pid_file(daemon), log, 30.0)
        self._write_started(started)
        self._wait_idle(env)
        return self.status()

    def write_conf(self) -> bool:
        """Write ``slurm.conf`` (one node: these CPUs, most of the memory); True if it changed."""
        for sub in ("spool/ctld", "spool/d", "log", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        node = socket.gethostname().split(".")[0]
        memory = int(machine_memory_mb() * MEMORY_SHARE)
        lines = [
            "ClusterName=lsdr",
            "SlurmctldHost=localhost",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            "MpiDefault=none",
            "MailProg=/bin/true",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "DefMemPerCPU=1000",
            "ReturnToService=2",
            *self.accounting.slurm_conf_lines(),
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={self.job_record}",
            f"StateSaveLocation={self.root / 'spool/ctld'}",
            f"SlurmdSpoolDir={self.root / 'spool/d'}",
            f"SlurmctldPidFile={self.pid_file('slurmctld')}",
            f"SlurmdPidFile={self.pid_file('slurmd')}",
            f"SlurmctldLogFile={self.log_dir / 'slurmctld.log'}",
            f"SlurmdLogFile={self.log_dir / 'slurmd.log'}",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            "InactiveLimit=0",
            "MinJobAge=300",
            "KillWait=5",
            f"NodeName={node} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} "
            f"RealMemory={memory} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        ]
        text = "\n".join(lines) + "\n"
        if self.conf.exists() and self.conf.read_text() == text:
            return False
        tmp = self.conf.with_name(f"tmp-{os.getpid()}-slurm.conf")
        tmp.write_text(text)
        tmp.replace(self.conf)
        return True

    def _wait_idle(self, env: Mapping[str, str]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        state = None
        while time.monotonic() < deadline:
            state = node_state(env)
            if state and state.rstrip("*") in ("idle", "mixed", "allocated"):
                return
            time.sleep(0.5)
        raise UsageError(
            f"the local SLURM node is {state or 'not reported'} after {READY_TIMEOUT_S:.0f} s; "
            f"see {self.log_dir}"
        )

    # -- down ---------------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Cancel the cluster's jobs and stop the daemons lsdr started (by PID); what stopped."""
        stopped: list[str] = []
        if not self.conf.exists():
            return stopped
        env = {**os.environ, **self.environment()}
        if shutil.which("scancel") is not None and self._alive("slurmctld") is not None:
            subprocess.run(
                ["scancel", "--partition", PARTITION], env=env, capture_output=True, timeout=30
            )
        started = self._started()
        for name in ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged"):
            pid = started.pop(name, None)
            if pid is not None and _stop(pid):
                stopped.append(name)
        self._write_started(started)
        return stopped

    # -- status -------------------------------------------------------------------------------
    def status(self) -> SlurmStatus:
        """The daemons' PIDs (None: not running), the node's state and the jobs."""
        env = {**os.environ, **self.environment()}
        daemons = {d: self._alive(d) for d in (*ACCOUNTING_DAEMONS, *DAEMONS)}
        up = daemons["slurmctld"] is not None
        return SlurmStatus(
            daemons,
            node_state(env) if up else None,
            tuple(jobs(env)) if up else (),
        )

    # -- records ------------------------------------------------------------------------------
    def _alive(self, daemon: str) -> int | None:
        return running_pid(self.pid_file(daemon))

    def _started(self) -> dict[str, int]:
        try:
            data = json.loads(self.started_record.read_text())
        except (OSError, ValueError):
            return {}
        return {k: int(v) for k, v in data.items() if pid_alive(int(v))}

    def _write_started(self, started: Mapping[str, int]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.started_record.with_name(f"tmp-{os.getpid()}-started.json")
        tmp.write_text(json.dumps(dict(started), indent=1))
        tmp.replace(self.started_record)


def install_if_missing(packages: Sequence[str] = PACKAGES) -> None:
    """``apt-get install --no-install-recommends`` the packages when a daemon is missing."""
    needed = ("slurmctld", "slurmd", "munged", "sbatch", "sacct", "slurmdbd", "mariadbd")
    if all(shutil.which(p) or Path(f"/usr/sbin/{p}").exists() for p in needed):
        return
    if shutil.which("apt-get") is None:
        raise MissingDependencyError(
            "executable",
            "slurmctld",
            install="install slurm-wlm and munge with your system's package manager",
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise MissingDependencyError(
                "executable",
                "slurmctld",
                install=f"apt-get install --no-install-recommends {' '.join(packages)}",
                reason=f"{' '.join(argv)} failed: {done.stderr.strip()[-300:]}",
            )


def start_munge() -> int | None:
    """Start munged unless it answers already; its PID when this call started it."""
    if subprocess.run(["munge", "-n"], capture_output=True, check=False).returncode == 0:
        return None
    key = Path("/etc/munge/munge.key")
    if not key.exists() or key.stat().st_size == 0:
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True)
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
    run = Path("/run/munge")
    run.mkdir(parents=True, exist_ok=True)
    shutil.chown(run, "munge", "munge")
    subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if subprocess.run(["munge", "-n"], capture_output=True, check=False).returncode == 0:
            try:
                return int(Path("/run/munge/munged.pid").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                return None
        time.sleep(0.2)
    raise UsageError("munged did not start: see /var/log/munge/munged.log")


def node_state(env: Mapping[str, str]) -> str | None:
    """The node's state as ``sinfo`` reports it (``idle``, ``mixed``, ``down*``), or None."""
    done = subprocess.run(
        ["sinfo", "-h", "-o", "%T"], env=dict(env), capture_output=True, text=True, check=False
    )
    states = done.stdout.split()
    return states[0] if done.returncode == 0 and states else None


def jobs(env: Mapping[str, str], name: str | None = None) -> list[SlurmJob]:
    """The cluster's jobs (``squeue``), optionally only those named ``name``."""
    argv = ["squeue", "-h", "-o", "%i|%j|%T|%M|%N"]
    if name is not None:
        argv += ["--name", name]
    done = subprocess.run(argv, env=dict(env), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return []
    out = []
    for line in done.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 5:
            out.append(SlurmJob(*parts))
    return out


def _stop(pid: int, timeout: float = 15.0) -> bool:
    """SIGTERM, then SIGKILL after ``timeout``; True when the process is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


WORKER_JOB_NAME = "lsdr-worker"
"""The name of every lsdr worker job (``SlurmProfile.cluster_kwargs``)."""


def release_jobs(state_dir: Path) -> list[SlurmJob] | None:
    """The worker jobs serving a release (their output under its ``state/``), as ``sqs`` lists.

    None when there is no SLURM here (no ``squeue``, or no cluster configured); jobs of other
    releases are left out when their output file says where they belong.
    """
    if shutil.which("squeue") is None:
        return None
    env = dict(os.environ)
    if "SLURM_CONF" not in env:
        local = LocalSlurm.default()
        if not local.conf.exists():
            return None
        env.update(local.environment())
    argv = [
        "squeue",
        "-h",
        "--name",
        WORKER_JOB_NAME,
        "-O",
        "JobID:|,State:|,TimeUsed:|,NodeList:|,StdOut:",
    ]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        return None
    out = []
    mine = str(state_dir.resolve())
    for line in done.stdout.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 5:
            continue
        job_id, state, elapsed, node, stdout = parts[:5]
        if stdout and stdout.startswith("/") and not stdout.startswith(mine):
            continue
        out.append(SlurmJob(job_id, WORKER_JOB_NAME, state, elapsed, node))
    return out
