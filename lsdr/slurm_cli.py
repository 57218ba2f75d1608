"""``lsdr slurm up|down|status``: the single-node SLURM the ``local-slurm`` profile submits to."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

slurm_app = typer.Typer(
    help="A single-node SLURM on this machine (slurmctld, slurmd, munge; no systemd).",
    epilog="Example: lsdr slurm up (then cluster: local-slurm runs the workers as SLURM jobs).",
    no_args_is_help=True,
)
out = Console()

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Where its configuration, spool, logs and PIDs live (default $LSDR_SLURM_DIR, "
        "else /var/lib/lsdr/slurm).",
    ),
]


def _cluster(state_dir: Path | None) -> object:
    from lsdr.infra.slurm import LocalSlurm

    return LocalSlurm(state_dir.resolve()) if state_dir else LocalSlurm.default()


def _show(status: object) -> None:
    from lsdr.infra.slurm import SlurmStatus

    assert isinstance(status, SlurmStatus)
    for daemon, pid in status.daemons.items():
        out.print(f"{daemon}: {'pid ' + str(pid) if pid else 'not running'}", highlight=False)
    out.print(f"node: {status.node_state or 'unknown'}", highlight=False)
    for job in status.jobs:
        out.print(
            f"job {job.job_id} {job.name} {job.state} {job.elapsed} {job.node}", highlight=False
        )


@slurm_app.command("up")
def slurm_up(state_dir: StateDir = None) -> None:
    """Install (if missing), configure and start the local SLURM; fine to run twice."""
    from lsdr.infra.slurm import LocalSlurm

    cluster = _cluster(state_dir)
    assert isinstance(cluster, LocalSlurm)
    _show(cluster.up())
    out.print(f"SLURM_CONF={cluster.conf}", highlight=False, soft_wrap=True)


@slurm_app.command("down")
def slurm_down(state_dir: StateDir = None) -> None:
    """Cancel its jobs and stop the daemons that up started (by their PIDs, nothing else)."""
    from lsdr.infra.slurm import LocalSlurm

    cluster = _cluster(state_dir)
    assert isinstance(cluster, LocalSlurm)
    stopped = cluster.down()
    out.print(f"stopped: {', '.join(stopped) or 'nothing (none was running)'}", highlight=False)


@slurm_app.command("status")
def slurm_status(state_dir: StateDir = None) -> None:
    """Its daemons, its node's state and its jobs."""
    from lsdr.infra.slurm import LocalSlurm

    cluster = _cluster(state_dir)
    assert isinstance(cluster, LocalSlurm)
    _show(cluster.status())
