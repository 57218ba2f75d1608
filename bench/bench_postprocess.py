"""Post-processing benchmark: peak memory and time per brick of the brick summary and sweeps.

Writes 240 fake but schema-valid runbrick outputs (``tests/postprocess_fakes.py``: a tractor
catalogue of ``--objects`` rows and g, r, z ``nexp`` maps of ``--nexp-size``² pixels per
brick, all inside the sweep box RA 180–185, Dec 30–35), then for the first 15, 60 and 240
bricks runs, each in a fresh subprocess that reports its own peak RSS (``VmHWM``):
``summary`` = ``summarize_chunk`` for every RA-degree chunk + ``merge_brick_summary`` (with
plots), and ``sweep`` = ``write_sweep`` of the box.  Reported as ratios to the 15-brick run of
the same session: peak memory (target: flat) and time per brick (target: flat).
Run: ``cd bench && ../.venv/bin/python bench_postprocess.py [--json PATH] [--md PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from report import emit

ROOT = Path(__file__).resolve().parents[1]
COUNTS = (15, 60, 240)


def _fakes() -> Any:
    sys.path.insert(0, str(ROOT / "tests"))
    import postprocess_fakes  # the tests' fake-output writer, reused

    return postprocess_fakes


def build(root: Path, objects: int, nexp_size: int) -> list[str]:
    """Write the fake outputs of the 240 bricks; return the brick names in build order."""
    import numpy as np

    from lsdr.survey.core.layout import ReleaseLayout

    fakes = _fakes()
    layout = ReleaseLayout(root)
    bricks: list[str] = fakes.fake_bricks(max(COUNTS))
    rng = np.random.default_rng(2026)
    for brick in bricks:
        fakes.write_fake_brick(layout, brick, rng, n=objects, size=nexp_size)
    return bricks


def run_child(kind: str, root: Path, bricks: list[str]) -> dict[str, Any]:
    """(In the child) run one phase over the bricks; return its time and counts."""
    from lsdr.survey.core.layout import ReleaseLayout

    layout = ReleaseLayout(root)
    t0 = time.perf_counter()
    if kind == "summary":
        from lsdr.survey.posttractor.bricksummary import (
            merge_brick_summary,
            summarize_chunk,
            summary_chunks,
        )

        chunks = [summarize_chunk(layout, k, v) for k, v in summary_chunks(bricks).items()]
        result = merge_brick_summary(layout, [c.path for c in chunks])
        rows = result.bricks
    else:
        from lsdr.survey.posttractor.sweeps import sweep_boxes, write_sweep

        rows = 0
        for box in sweep_boxes(layout, bricks):
            rows += write_sweep(layout, box, "bench").rows
    return {"seconds": time.perf_counter() - t0, "rows": rows, "peak_mb": _vm_hwm_mb()}


def _vm_hwm_mb() -> float:
    """Peak resident memory of this process (``VmHWM``, reset at exec unlike ``ru_maxrss``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def measure(kind: str, root: Path, bricks: list[str]) -> dict[str, Any]:
    """One phase over ``bricks`` in a fresh process; its record plus wall time."""
    with tempfile.TemporaryDirectory(prefix="lsdr-bench-post-") as scratch:
        listing = Path(scratch) / "bricks.json"
        listing.write_text(json.dumps(bricks))  # never a command line of names
        out = Path(scratch) / "result.json"
        cmd = [sys.executable, __file__, "--child", kind, str(root), str(listing), str(out)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=scratch)
        record: dict[str, Any] = json.loads(out.read_text())
    record.update(kind=kind, bricks=len(bricks), wall=time.perf_counter() - t0)
    record["seconds_per_brick"] = record["seconds"] / len(bricks)
    return record


def markdown(rows: list[dict[str, Any]]) -> str:
    """The results as a markdown table with ratios to the 15-brick run of each phase."""
    lines = [
        "| phase | bricks | rows | time | per brick | × | peak RSS | × |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = next(b for b in rows if b["kind"] == r["kind"] and b["bricks"] == COUNTS[0])
        lines.append(
            f"| {r['kind']} | {r['bricks']} | {r['rows']:,} | {r['seconds']:.2f} s | "
            f"{1000 * r['seconds_per_brick']:.0f} ms | "
            f"{r['seconds_per_brick'] / base['seconds_per_brick']:.2f} | "
            f"{r['peak_mb']:.0f} MB | {r['peak_mb'] / base['peak_mb']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Build the fake outputs, run both phases over 15, 60 and 240 bricks, report ratios."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, root, listing, out = sys.argv[2:6]
        bricks = json.loads(Path(listing).read_text())
        Path(out).write_text(json.dumps(run_child(kind, Path(root), bricks)))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=1000, help="objects per catalogue")
    parser.add_argument("--nexp-size", type=int, default=600, help="nexp map side (pixels)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path, help="write the markdown table here")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lsdr-bench-post-release-"))
    rows: list[dict[str, Any]] = []
    try:
        t0 = time.perf_counter()
        bricks = build(root, args.objects, args.nexp_size)
        print(f"wrote {len(bricks)} fake bricks in {time.perf_counter() - t0:.1f} s")
        for kind in ("summary", "sweep"):
            for count in COUNTS:
                row = measure(kind, root, bricks[:count])
                rows.append(row)
                print(json.dumps(row))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report: dict[str, float | int | str] = {
        "objects_per_brick": args.objects,
        "nexp_size": args.nexp_size,
        "cpus": os.cpu_count() or 0,
    }
    for kind in ("summary", "sweep"):
        base = next(r for r in rows if r["kind"] == kind and r["bricks"] == COUNTS[0])
        report[f"{kind}_base_peak_mb"] = round(base["peak_mb"], 1)
        report[f"{kind}_base_ms_per_brick"] = round(1000 * base["seconds_per_brick"], 1)
        for count in COUNTS[1:]:
            r = next(x for x in rows if x["kind"] == kind and x["bricks"] == count)
            report[f"{kind}_mem_ratio_{count}_{COUNTS[0]}"] = round(
                r["peak_mb"] / base["peak_mb"], 3
            )
            report[f"{kind}_time_per_brick_ratio_{count}_{COUNTS[0]}"] = round(
                r["seconds_per_brick"] / base["seconds_per_brick"], 3
            )
    emit(report, args.json)
    table = markdown(rows)
    print(table)
    if args.md:
        args.md.write_text(table)


if __name__ == "__main__":
    main()
