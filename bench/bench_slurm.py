"""SLURM benchmark: time to the first unit on SLURM workers, and the cost per unit, vs ``local``.

The same work on both profiles, in one run: ``--units`` probe units of ``--seconds`` each
(``tests/probe_units.interval_unit``: it sleeps and records when it started), one unit per
Prefect task, on two workers: a ``LocalCluster`` (``local``) and two batch jobs of the local
SLURM (``local-slurm``, ``lsdr slurm up`` first).  Reported: the time from the flow's start to
its first unit running, and the overhead per unit, (wall − ideal) / units with ideal = units ×
seconds / workers, each as the ratio ``local-slurm`` / ``local``.
Run: ``cd bench && ../.venv/bin/python bench_slurm.py [--units 20] [--seconds 0.5] [--json P]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from report import emit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import cloudpickle  # noqa: E402
import probe_units as probe  # noqa: E402  (the tests' probe units, reused)
from prefect import flow  # noqa: E402

from lsdr.flows.report import PhaseResult, phase_summary  # noqa: E402
from lsdr.flows.runner import run_units  # noqa: E402
from lsdr.flows.settings import settings_for  # noqa: E402
from lsdr.infra.cluster import task_runner  # noqa: E402
from lsdr.infra.settings import load_settings  # noqa: E402
from lsdr.tasks.unit import Unit  # noqa: E402

cloudpickle.register_pickle_by_value(probe)
WORKERS = 2


@flow(name="bench-slurm")
def probe_flow(
    release_dir: str, units: int, seconds: float, settings: dict[str, Any]
) -> PhaseResult:
    """``units`` interval probes of ``seconds`` each, one per task."""
    s = settings_for(release_dir, settings)
    todo = [Unit("probe", f"u{i:03d}", (), (("seconds", seconds),)) for i in range(units)]
    return phase_summary(run_units("probe", probe.interval_unit, todo, s, batch_size=1))


def measure(profile: str, units: int, seconds: float) -> dict[str, float]:
    """One flow on ``profile``: wall time, time to the first unit, overhead per unit."""
    settings: dict[str, Any] = (
        {"cluster": "local", "n_workers": WORKERS}
        if profile == "local"
        else {"cluster": "local-slurm", "nodes": WORKERS}
    )
    with tempfile.TemporaryDirectory(prefix=f"bench-{profile}-") as tmp:
        s = load_settings(Path(tmp), **settings)
        t0 = time.time()
        result = probe_flow.with_options(task_runner=task_runner(s, None))(
            tmp, units, seconds, settings
        )
        wall = time.time() - t0
        assert result.counts.done == units, result
        starts = [float(p.read_text().split()[0]) for p in (Path(tmp) / "probe-out").glob("*.txt")]
    ideal = units * seconds / WORKERS
    return {
        "wall_s": wall,
        "first_unit_s": min(starts) - t0,
        "overhead_per_unit_s": (wall - ideal) / units,
    }


def main() -> None:
    """Measure both profiles in one run and report the ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--units", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not os.environ.get("PREFECT_API_URL"):
        sys.exit("set PREFECT_API_URL to a running server (lsdr server up, then lsdr server url)")
    local = measure("local", args.units, args.seconds)
    slurm = measure("local-slurm", args.units, args.seconds)
    report: dict[str, float | int | str] = {"units": args.units, "unit_seconds": args.seconds}
    for name, measured in (("local", local), ("local_slurm", slurm)):
        report.update({f"{name}_{k}": v for k, v in measured.items()})
    for key in local:
        report[f"ratio_{key}"] = slurm[key] / local[key] if local[key] else float("nan")
    emit(report, args.json)


if __name__ == "__main__":
    main()
