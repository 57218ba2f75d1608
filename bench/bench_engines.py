"""Engine benchmark: time and peak memory per brick of legacypipe's runbrick against lsdr's lite.

Both science engines run the same real test cases (legacypipe's own test data, each case copied
to a scratch directory first, the shared copy is only read) through the CLI, ``lsdr runbrick
--engine lite|legacypipe``, each run in a fresh subprocess with a fresh output directory.  Wall
time is ``time.perf_counter`` around the subprocess; peak memory is the largest max RSS of any
process in the tree (the lsdr process and, for legacypipe, the runbrick it starts), from
``/usr/bin/time -f %M`` or, without it, ``RUSAGE_CHILDREN`` of a fresh wrapper process.  Each
(case, engine) runs ``--repeat`` times, interleaved, and the median is reported, with the ratio
legacypipe/lite per case, the geometric mean over cases, and each catalogue's row count.
With ``--demo RELEASE`` whole bricks of a finished ``lsdr demo`` release run too, at the
demo's grid (1800² at 0.524″), read in place (outputs in a scratch directory); both engines
run with ``--threads 1``.  Run: ``cd bench && ../.venv/bin/python bench_engines.py [--quick]
[--repeat N] [--demo RELEASE [--demo-bricks B ...] [--no-cases]] [--json PATH] [--md PATH]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from report import emit

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "legacypipe-test"
"""legacypipe's test data (read-only; each run works on a copy)."""
ENGINES = ("lite", "legacypipe")
GNU_TIME = Path("/usr/bin/time")


@dataclass(frozen=True)
class Case:
    """One brick to run: a test-data case (copied) at its zoom, or a demo brick (read in place)."""

    name: str
    brick: str
    zoom: tuple[int, int, int, int] | None
    width: int | None = None
    pixscale: float | None = None
    survey: Path | None = None
    """A release to read (a demo's); None: the case's directory of the test data, copied."""


DEMO_WIDTH, DEMO_PIXSCALE = 1800, 0.524
"""The demo's brick grid (``lsdr demo``: the whole brick at 0.524″)."""


def demo_cases(release: Path, bricks: list[str]) -> list[Case]:
    """Whole demo bricks of a finished ``lsdr demo`` release, at the demo's grid."""
    return [Case(f"demo-{b}", b, None, DEMO_WIDTH, DEMO_PIXSCALE, release) for b in bricks]


CASES = (
    Case("mzlsbass2", "1773p595", (1300, 1500, 700, 900)),
    Case("testcase3", "2447p120", (1020, 1070, 2775, 2815)),
    Case("testcase6", "1102p240", (500, 600, 650, 750)),
    Case("testcase8", "1209p050", (720, 1095, 3220, 3500)),
)


def runbrick_command(case: Case, survey: Path, outdir: Path, engine: str) -> list[str]:
    """The ``lsdr runbrick`` command line of one case and engine."""
    return [
        sys.executable,
        "-m",
        "lsdr",
        "runbrick",
        "--survey-dir",
        str(survey),
        "--outdir",
        str(outdir),
        "--brick",
        case.brick,
        *(["--zoom", *(str(z) for z in case.zoom)] if case.zoom else []),
        *(["-W", str(case.width), "-H", str(case.width)] if case.width else []),
        *(["--pixscale", str(case.pixscale)] if case.pixscale else []),
        "--threads",
        "1",
        "--engine",
        engine,
    ]


def writable_copy(source: Path, target: Path) -> Path:
    """A copy of a test case that runbrick may write into (the shared copy may be read-only)."""
    shutil.copytree(source, target)
    for path in [target, *target.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)
    return target


def wrapper_child(memfile: Path, cmd: list[str]) -> int:
    """(In the wrapper) run ``cmd``; write the max RSS (KB) over its waited-for process tree."""
    status = subprocess.call(cmd)
    memfile.write_text(f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\n")
    return status


def count_rows(catalogue: Path) -> int:
    """Rows of a tractor catalogue (HDU 1), or -1 when it is missing."""
    if not catalogue.exists():
        return -1
    import fitsio

    with fitsio.FITS(str(catalogue)) as fits:
        return int(fits[1].get_nrows())


def measure(data: Path, case: Case, engine: str) -> dict[str, Any]:
    """Run one case with one engine in a fresh subprocess; wall time, peak RSS, rows, status."""
    scratch = Path(tempfile.mkdtemp(prefix="lsdr-bench-engines-"))
    try:
        if case.survey is not None:
            survey = case.survey  # read only: the outputs go to the scratch directory
        else:
            survey = writable_copy(data / case.name, scratch / "survey")
        outdir = scratch / "out"
        memfile = scratch / "maxrss"
        cmd = runbrick_command(case, survey, outdir, engine)
        if GNU_TIME.exists():
            cmd = [str(GNU_TIME), "-f", "%M", "-o", str(memfile), *cmd]
        else:
            cmd = [sys.executable, __file__, "--child", str(memfile), "--", *cmd]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=str(scratch), capture_output=True, text=True)
        wall = time.perf_counter() - t0
        text = memfile.read_text().split() if memfile.exists() else []
        peak_kb = int(text[-1]) if text and text[-1].isdigit() else -1
        catalogue = outdir / "tractor" / case.brick[:3] / f"tractor-{case.brick}.fits"
        rows = count_rows(catalogue)
        ok = proc.returncode == 0 and rows >= 0
        tail = "" if ok else " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        return {
            "case": case.name,
            "engine": engine,
            "ok": ok,
            "returncode": proc.returncode,
            "wall": wall,
            "peak_mb": peak_kb / 1024.0,
            "sources": rows,
            "error": tail,
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def geomean(values: list[float]) -> float:
    """Geometric mean of positive numbers."""
    return math.exp(sum(math.log(v) for v in values) / len(values))


def summarize(rows: list[dict[str, Any]], cases: list[Case]) -> list[dict[str, Any]]:
    """Per case the median time and peak RSS of each engine and the ratios legacypipe/lite."""
    table = []
    for case in cases:
        line: dict[str, Any] = {"case": case.name, "brick": case.brick, "zoom": case.zoom}
        line["width"] = case.width
        for engine in ENGINES:
            runs = [r for r in rows if r["case"] == case.name and r["engine"] == engine]
            line[f"{engine}_s"] = statistics.median(r["wall"] for r in runs)
            line[f"{engine}_mb"] = statistics.median(r["peak_mb"] for r in runs)
            line[f"{engine}_sources"] = sorted({r["sources"] for r in runs})
            line[f"{engine}_runs"] = len(runs)
        line["time_ratio"] = line["legacypipe_s"] / line["lite_s"]
        line["mem_ratio"] = line["legacypipe_mb"] / line["lite_mb"]
        table.append(line)
    return table


def markdown(table: list[dict[str, Any]]) -> str:
    """The per-case medians and ratios as a markdown table, geometric means last."""

    def sources(values: list[int]) -> str:
        """One row count, or all of them when repeats disagreed."""
        return "/".join(str(v) for v in values)

    lines = [
        "| case | brick | zoom (pixels) | sources lite | sources legacypipe | time lite "
        "| time legacypipe | × | peak RSS lite | peak RSS legacypipe | × |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in table:
        x0, x1, y0, y1 = t["zoom"] or (0, t["width"], 0, t["width"])
        lines.append(
            f"| {t['case']} | {t['brick']} | {x1 - x0}×{y1 - y0} | {sources(t['lite_sources'])} "
            f"| {sources(t['legacypipe_sources'])} | {t['lite_s']:.1f} s "
            f"| {t['legacypipe_s']:.1f} s | {t['time_ratio']:.2f} | {t['lite_mb']:.0f} MB "
            f"| {t['legacypipe_mb']:.0f} MB | {t['mem_ratio']:.2f} |"
        )
    if table:
        gt = geomean([t["time_ratio"] for t in table])
        gm = geomean([t["mem_ratio"] for t in table])
        lines.append(f"| geometric mean | | | | | | | **{gt:.2f}** | | | **{gm:.2f}** |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run every case with both engines, drop the cases an engine fails, print and save."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(wrapper_child(Path(sys.argv[2]), sys.argv[4:]))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="runs per (case, engine)")
    parser.add_argument("--quick", action="store_true", help="one run per (case, engine)")
    parser.add_argument("--cases", nargs="+", choices=[c.name for c in CASES], help="a subset")
    parser.add_argument("--data", type=Path, default=DATA, help="legacypipe's test data")
    parser.add_argument("--demo", type=Path, help="also whole bricks of this lsdr demo release")
    parser.add_argument("--demo-bricks", nargs="+", default=["1804p325", "1801p322", "1807p327"])
    parser.add_argument("--no-cases", action="store_true", help="only the demo bricks")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path, help="write the markdown table here")
    args = parser.parse_args()
    repeat = 1 if args.quick else max(1, args.repeat)
    cases = [] if args.no_cases else [c for c in CASES if not args.cases or c.name in args.cases]
    if args.demo is not None:
        cases += demo_cases(args.demo.resolve(), args.demo_bricks)
    print(f"memory from {'/usr/bin/time -f %M' if GNU_TIME.exists() else 'RUSAGE_CHILDREN'}")
    rows: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    for i in range(repeat):
        for case in cases:
            if case.name in failed:
                continue
            for engine in ENGINES:
                row = measure(args.data, case, engine)
                row["repeat"] = i
                rows.append(row)
                print(json.dumps(row), flush=True)
                if not row["ok"]:
                    failed[case.name] = f"{engine} exited {row['returncode']}: {row['error']}"
                    break
    kept = [c for c in cases if c.name not in failed]
    table = summarize([r for r in rows if r["ok"]], kept)
    report: dict[str, float | int | str] = {
        "repeat": repeat,
        "cpus": os.cpu_count() or 0,
        "memory": "/usr/bin/time %M" if GNU_TIME.exists() else "RUSAGE_CHILDREN",
    }
    for t in table:
        c = t["case"]
        for engine in ENGINES:
            report[f"{c}_{engine}_s"] = round(t[f"{engine}_s"], 2)
            report[f"{c}_{engine}_mb"] = round(t[f"{engine}_mb"], 1)
            report[f"{c}_{engine}_sources"] = "/".join(map(str, t[f"{engine}_sources"]))
        report[f"{c}_time_ratio"] = round(t["time_ratio"], 3)
        report[f"{c}_mem_ratio"] = round(t["mem_ratio"], 3)
    if table:
        report["geomean_time_ratio"] = round(geomean([t["time_ratio"] for t in table]), 3)
        report["geomean_mem_ratio"] = round(geomean([t["mem_ratio"] for t in table]), 3)
    for name, why in failed.items():
        report[f"{name}_dropped"] = why
    emit(report, args.json)
    text = markdown(table)
    print(text)
    if args.md:
        args.md.write_text(text)
    if args.json:
        args.json.with_suffix(".rows.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
