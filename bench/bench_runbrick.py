"""Runbrick benchmark: time and peak memory of one lite brick against CCD count, size, threads.

Builds small synthetic releases (``tests/runbrick_survey.build``: 90Prime g, r and Mosaic z
around brick 1804p325 at the demo binning, after zeropoints and merges) with 1, 2 and 4 passes,
so the brick is covered by more and more CCDs, then runs ``run_brick`` (all stages, force-all)
for each (passes, brick size, threads) in a fresh subprocess, which reports its own peak RSS
(``VmHWM``).  Times and memories are reported as ratios to the smallest configuration
measured in the same run, plus t(threads=2)/t(threads=1) at the largest size, and a least-squares
memory model MB ≈ a + b·(brick megapixels) + c·(CCD megapixels read).
Run: ``cd bench && ../.venv/bin/python bench_runbrick.py [--quick] [--json PATH] [--md PATH]``.
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

import numpy as np
from report import emit

ROOT = Path(__file__).resolve().parents[1]
BRICK = "1804p325"


def build_release(root: Path, passes: int) -> None:
    """The runbrick tests' synthetic release with ``passes`` passes per band."""
    sys.path.insert(0, str(ROOT / "tests"))
    from runbrick_survey import build  # the tests' builder, reused

    build(root, passes=passes)


def run_one(release: Path, size: int, threads: int) -> dict[str, Any]:
    """(In the child) run the brick once; return times, CCD count and pixels read."""
    from lsdr.survey.core.layout import ReleaseLayout
    from lsdr.survey.runbrick.options import RunbrickOptions
    from lsdr.survey.runbrick.stages import run_brick

    layout = ReleaseLayout(release)
    options = RunbrickOptions(width=size, height=size, threads=threads, force_all=True)
    t0 = time.perf_counter()
    result = run_brick(layout, BRICK, options)
    seconds = time.perf_counter() - t0
    import fitsio

    ccds = fitsio.read(str(layout.coadd_ccds(BRICK)))
    w = ccds["ccd_x1"].astype(np.int64) - ccds["ccd_x0"]
    h = ccds["ccd_y1"].astype(np.int64) - ccds["ccd_y0"]
    pixels = int(np.sum(w * h))
    n_src = len(fitsio.read(str(layout.tractor(BRICK)), columns=["objid"]))
    return {
        "seconds": seconds,
        "n_ccds": result.n_ccds,
        "ccd_mpix": pixels / 1e6,
        "sources": n_src,
        "status": result.status,
        "peak_mb": _vm_hwm_mb(),
    }


def _vm_hwm_mb() -> float:
    """Peak resident memory of the process (``VmHWM``, reset at exec unlike ``ru_maxrss``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def measure(release: Path, size: int, threads: int) -> dict[str, Any]:
    """Run one configuration in a fresh process; add its own peak RSS (MB) and wall time."""
    scratch = Path(tempfile.mkdtemp(prefix="lsdr-bench-runbrick-"))
    work = scratch / "release"
    shutil.copytree(release, work, ignore=shutil.ignore_patterns("coadd", "tractor*", "metrics"))
    out = scratch / "result.json"
    cmd = [sys.executable, __file__, "--child", str(work), str(size), str(threads), str(out)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=str(scratch))
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    try:
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd} exited {proc.returncode}")
        record: dict[str, Any] = json.loads(out.read_text())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    # The child's own VmHWM: ru_maxrss would carry the parent's peak across fork + exec.
    # Processes of the child's fit pool (threads > 1) are not counted.
    record.update(size=size, threads=threads, wall=wall, cpu=usage.ru_utime + usage.ru_stime)
    return record


def fit_memory_model(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Least squares MB = a + b·brick_mpix + c·ccd_mpix; also the worst relative residual."""
    a = np.array([[1.0, r["size"] ** 2 / 1e6, r["ccd_mpix"]] for r in rows])
    y = np.array([r["peak_mb"] for r in rows])
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    resid = (a @ coef - y) / y
    return {
        "mem_a_mb": round(float(coef[0]), 1),
        "mem_b_mb_per_brick_mpix": round(float(coef[1]), 2),
        "mem_c_mb_per_ccd_mpix": round(float(coef[2]), 2),
        "mem_model_worst_rel_error": round(float(np.abs(resid).max()), 3),
    }


def markdown(rows: list[dict[str, Any]], base: dict[str, Any]) -> str:
    """The results as a markdown table, ratios to the smallest configuration."""
    lines = [
        "| passes | CCDs | CCD Mpix read | brick | threads | sources | time | × | CPU | × "
        "| peak RSS | × |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['passes']} | {r['n_ccds']} | {r['ccd_mpix']:.1f} | {r['size']}² | "
            f"{r['threads']} | {r['sources']} | {r['seconds']:.1f} s | "
            f"{r['seconds'] / base['seconds']:.2f} | {r['cpu']:.1f} s | "
            f"{r['cpu'] / base['cpu']:.2f} | {r['peak_mb']:.0f} MB | "
            f"{r['peak_mb'] / base['peak_mb']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Build the releases, run every configuration, print and save the report."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        release, size, threads, out = sys.argv[2:6]
        record = run_one(Path(release), int(size), int(threads))
        Path(out).write_text(json.dumps(record))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="passes 1, 2; sizes 300, 600, 900")
    parser.add_argument("--keep", type=Path, help="build (or reuse) the releases here")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path, help="write the markdown table here")
    args = parser.parse_args()
    passes_list = (1, 2) if args.quick else (1, 2, 4)
    sizes = (300, 600, 900) if args.quick else (900, 1800, 3600)
    base_dir = args.keep or Path(tempfile.mkdtemp(prefix="lsdr-bench-releases-"))
    rows: list[dict[str, Any]] = []
    try:
        for passes in passes_list:
            release = base_dir / f"passes{passes}"
            if not (release / ".ready").exists():
                shutil.rmtree(release, ignore_errors=True)
                t0 = time.perf_counter()
                build_release(release, passes)
                (release / ".ready").write_text("ok\n")
                print(f"built {passes}-pass release in {time.perf_counter() - t0:.0f} s")
            for size in sizes:
                threads_list = (1, 2) if size == sizes[-1] else (1,)
                for threads in threads_list:
                    row = measure(release, size, threads)
                    row["passes"] = passes
                    rows.append(row)
                    print(json.dumps(row))
    finally:
        if args.keep is None:
            shutil.rmtree(base_dir, ignore_errors=True)
    base = rows[0]
    single = [r for r in rows if r["threads"] == 1]
    report: dict[str, float | int | str] = {"brick": BRICK, "quick": str(args.quick)}
    for r in single:
        key = f"p{r['passes']}_s{r['size']}"
        report[f"{key}_ccds"] = r["n_ccds"]
        report[f"{key}_time_ratio"] = round(r["seconds"] / base["seconds"], 2)
        report[f"{key}_cpu_ratio"] = round(r["cpu"] / base["cpu"], 2)
        report[f"{key}_mem_ratio"] = round(r["peak_mb"] / base["peak_mb"], 2)
    for passes in passes_list:
        pair = [r for r in rows if r["passes"] == passes and r["size"] == sizes[-1]]
        t1 = next(r["seconds"] for r in pair if r["threads"] == 1)
        t2 = next(r["seconds"] for r in pair if r["threads"] == 2)
        report[f"p{passes}_s{sizes[-1]}_t2_over_t1"] = round(t2 / t1, 2)
    report.update(fit_memory_model(single))
    report["base_seconds"] = round(base["seconds"], 2)
    report["base_peak_mb"] = round(base["peak_mb"], 1)
    emit(report, args.json)
    table = markdown(rows, base)
    print(table)
    if args.md:
        args.md.write_text(table)
    if args.json:
        args.json.with_suffix(".rows.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
