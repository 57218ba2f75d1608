"""Flow overhead benchmark: a phase flow against a plain ``client.map`` of the same unit function.

For 10^3 and 10^4 light units (each checksums a 64 KiB file and writes the result, ~1 ms),
on one ``LocalCluster`` (2 single-threaded worker processes) and the project's own Prefect
server (SQLite), it times:
- baseline: ``client.map(unit_function, units)`` then ``gather`` — the same unit function,
  with no Prefect, no ledger, no provenance;
- flow: a Prefect flow running the same units through ``lsdr.flows.runner.run_units``
  (fingerprints, sidecars, the ledger, batched ``DaskTaskRunner`` tasks), batch size as given;
and reports the ratio flow / baseline and the overhead per unit.  It also measures the
ledger's write rate (units recorded per second, as the workers record them: a batch start and
a batch end, each one transaction).
Run: ``.venv/bin/python bench/bench_flow_overhead.py [--units 1000 10000] [--batch-size 250]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from report import emit

from lsdr.infra.prefect_server import client_environment, running_server
from lsdr.survey.core.fileio import write_text_atomic
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.unit import Unit, UnitOutput


def light_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Checksum the unit's input into its output: about a millisecond of real file work."""
    data = Path(unit.inputs[0]).read_bytes()
    out = layout.root / "out" / f"{unit.key}.txt"
    write_text_atomic(out, hashlib.sha256(data).hexdigest())
    return UnitOutput((out,))


def make_units(root: Path, n: int) -> list[Unit]:
    """``n`` units, each with its own 64 KiB input file."""
    (root / "in").mkdir(parents=True, exist_ok=True)
    units = []
    for i in range(n):
        path = root / "in" / f"u{i:06d}.dat"
        path.write_bytes(os.urandom(64 * 1024))
        units.append(Unit("bench", f"u{i:06d}", (str(path),)))
    return units


def baseline(client: Any, root: Path, units: list[Unit]) -> float:
    """Seconds for a plain client.map of the unit function over the units."""
    layout = ReleaseLayout(root)
    t0 = time.perf_counter()
    futures = client.map(light_unit, [layout] * len(units), units, pure=False)
    client.gather(futures)
    return time.perf_counter() - t0


def flow_time(address: str, root: Path, units: list[Unit], batch_size: int) -> float:
    """Seconds for a Prefect flow running the units through lsdr's runner."""
    from prefect import flow

    from lsdr.flows.runner import run_units
    from lsdr.infra.cluster import task_runner
    from lsdr.infra.settings import load_settings

    settings = load_settings(root, n_workers=2, batch_size=batch_size, progress=False)

    @flow(name="bench-overhead")
    def bench_flow() -> int:
        report = run_units("bench", light_unit, units, settings)
        assert report.ok and len(report.by_state("done")) == len(units)
        return len(units)

    t0 = time.perf_counter()
    bench_flow.with_options(task_runner=task_runner(settings, address))()
    return time.perf_counter() - t0


def ledger_rate(root: Path, n: int, batch: int) -> float:
    """Units per second recorded by batch start + batch end transactions (SQLite)."""
    from lsdr.infra.ledger import Ledger, UnitFinish, default_url

    ledger = Ledger(default_url(root / "ledger-bench"))
    keys = [f"k{i:07d}" for i in range(n)]
    ledger.plan("bench", keys)
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        chunk = keys[start : start + batch]
        ledger.start("bench", chunk)
        ledger.finish("bench", [UnitFinish(key=k, state="done", wall_s=0.001) for k in chunk])
    return n / (time.perf_counter() - t0)


def main() -> None:
    """Run the benchmark and print (optionally save) its report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="lsdr-bench-") as tmp,
        running_server(Path(tmp) / "state") as info,
    ):
        os.environ.update(client_environment(info))
        os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
        from distributed import Client, LocalCluster

        report: dict[str, float | int | str] = {
            "workers": "2 processes x 1 thread",
            "batch_size": args.batch_size,
        }
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        client = Client(cluster)
        try:
            # Warm the workers (imports of lsdr and Prefect) so neither side pays them.
            warm = Path(tmp) / "warm"
            client.gather(client.map(light_unit, [ReleaseLayout(warm)] * 4, make_units(warm, 4)))
            flow_time(
                cluster.scheduler_address,
                Path(tmp) / "warm-flow",
                make_units(Path(tmp) / "warm-flow", 8),
                args.batch_size,
            )
            for n in args.units:
                base_root = Path(tmp) / f"base-{n}"
                flow_root = Path(tmp) / f"flow-{n}"
                units_base = make_units(base_root, n)
                units_flow = make_units(flow_root, n)
                t_base = baseline(client, base_root, units_base)
                t_flow = flow_time(
                    cluster.scheduler_address, flow_root, units_flow, args.batch_size
                )
                report[f"n={n} client.map s"] = t_base
                report[f"n={n} flow s"] = t_flow
                report[f"n={n} ratio flow/client.map"] = t_flow / t_base
                report[f"n={n} overhead ms/unit"] = 1000 * (t_flow - t_base) / n
            report["ledger units recorded/s (batches of 100)"] = ledger_rate(Path(tmp), 10000, 100)
            report["ledger units recorded/s (one per transaction)"] = ledger_rate(
                Path(tmp) / "single", 1000, 1
            )
        finally:
            client.close()
            cluster.close()
    emit(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
