"""Rerun cost of the demo release after its inputs change, as ratios of its first run.

Simulates the demo survey, runs the whole release once (the baseline, measured in this run),
then, in place and in order: a rerun with nothing changed; reruns after touching 1, 10 and
all CP images (new mtimes, same bytes); and a rerun after adding one exposure (a repeat visit
of a Mosaic pointing with CCDs that pass the cuts,
``survey.simulate.simulator.add_exposure``).  Each rerun's wall time is reported as a ratio of
the first run's, with the units it started (from
the ledger, in total and per phase).
Run: ``.venv/bin/python bench/bench_rerun.py [--out DIR] [--workers 2] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from ledger_runs import as_text, attempts, lsdr, started_by_phase
from report import emit

from lsdr.survey.core.layout import ReleaseLayout

RELEASE = ("--region", "cookbook", "-W", "1800", "-H", "1800", "--pixscale", "0.524")
"""The demo's release options (binned 1800² bricks at 0.524″)."""


def started(before: dict[tuple[str, str], int], after: dict[tuple[str, str], int]) -> int:
    """Units started between two ledger readings."""
    return sum(started_by_phase(before, after).values())


def kept_mosaic_image(root: Path) -> str:
    """The first Mosaic image (by name) with a CCD that passes the cuts: it touches bricks."""
    import fitsio

    table = ReleaseLayout(root).survey_ccds("mosaic", "z")
    rows = fitsio.read(str(table), ext=1, columns=["image_filename", "ccd_cuts"])
    kept = sorted({str(name).strip() for name, cuts in rows if int(cuts) == 0})
    if not kept:
        raise SystemExit(f"{table}: no Mosaic CCD passes the cuts")
    return kept[0]


def images(root: Path) -> list[Path]:
    """The CP image files of the release (``ooi`` only), by name."""
    return sorted(p for p in ReleaseLayout(root).images_dir.rglob("*_ooi_*.fits.fz"))


def main() -> None:
    """Parse arguments, run the scenarios, print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="work directory (default: temp)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="bench-rerun-"))
    root = work / "release"
    workers = ("--workers", str(args.workers))
    release = ("run", "release", "--release-dir", str(root), *RELEASE, *workers)

    from lsdr.survey.simulate.config import SimulationConfig
    from lsdr.survey.simulate.simulator import add_exposure

    report: dict[str, float | int | str] = {"release": str(root)}
    region = ("--ra-min", "180", "--ra-max", "181", "--dec-min", "32", "--dec-max", "33")
    report["simulate_s"] = lsdr("simulate", "--out", str(root), *region, *workers)
    before = attempts(root) if ReleaseLayout(root).ledger_db.exists() else {}
    first = lsdr(*release)
    report["first_run_s"] = first
    report["first_run_units"] = started(before, attempts(root))

    def scenario(name: str, change: object) -> None:
        change()  # type: ignore[operator]
        before = attempts(root)
        seconds = lsdr(*release)
        report[f"{name}_s"] = seconds
        report[f"{name}_ratio"] = seconds / first
        after = attempts(root)
        by_phase = started_by_phase(before, after)
        report[f"{name}_units"] = sum(by_phase.values())
        report[f"{name}_started"] = as_text(by_phase)

    cp = images(root)

    def touch(n: int) -> None:
        for path in cp[:n]:
            os.utime(path)

    scenario("nothing_changed", lambda: None)
    scenario("touch_1_image", lambda: touch(1))
    scenario("touch_10_images", lambda: touch(10))
    scenario(f"touch_all_{len(cp)}_images", lambda: touch(len(cp)))
    mosaic = kept_mosaic_image(root)
    scenario("add_1_image", lambda: add_exposure(root, mosaic, config=SimulationConfig(seed=1)))
    emit(report, args.json)


if __name__ == "__main__":
    main()
