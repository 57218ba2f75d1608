"""Nightly increment cost against the number of new images and against the survey's size.

Two simulated surveys on the same sky: a fixed one (one row of three bricks) and one four times
larger (the row four times as long: twelve bricks), each released once.  Then, on each,
increments in order: ``counts`` new images (visits of a Mosaic exposure moved to one
boresight, the same in both surveys, with only its two CCDs over a sub-region written: they
fall on the same two bricks, ``add_exposure(visit=…, over=…, at=…)``), then a night with
nothing new.  Each increment's wall time is reported, with the units it started (from the
ledger), and as ratios: to the first count's increment of the same survey (cost against new
images) and larger/fixed for the same new images (cost against the survey's size).
Run: ``.venv/bin/python bench/bench_nightly.py [--counts 1,10,100] [--surveys fixed,larger]
[--out DIR] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from ledger_runs import as_text, attempts, lsdr, started_by_phase
from report import emit

from lsdr.survey.core import bricks as grid
from lsdr.survey.simulate.config import PassSpec, SimulationConfig

FIXED = grid.RaDecBox(180.1, 180.9, 32.49, 32.51)
"""One row of three bricks."""
LARGER = grid.RaDecBox(180.1, 183.65, 32.49, 32.51)
"""The same row four times as long: twelve bricks.  (Four rows would not do: a Mosaic CCD is
taller than a brick row, so the new images would touch the rows above and below too.)"""
OVER = grid.RaDecBox(180.4, 180.6, 32.3, 32.7)
"""Where the new images' CCDs are written: two bricks of the first row."""
AT = (180.696, 32.495)
"""The new images' boresight, the same in both surveys (so the same CCD WCS): a Mosaic pointing
whose two western CCDs fall on ``OVER``."""
GRID = ("-W", "400", "-H", "400", "--pixscale", "2.37")
"""Each brick whole on a coarse grid (0.263°)."""


def config(region: grid.RaDecBox) -> SimulationConfig:
    """One pass per band over the region; enough stars for the cuts on a thin strip."""
    passes = (PassSpec("90prime", "g", 1), PassSpec("90prime", "r", 1), PassSpec("mosaic", "z", 1))
    return SimulationConfig(
        region=region, passes=passes, star_density=8000.0, galaxy_density=1500.0, reprocessed=0
    )


def template(region: grid.RaDecBox) -> str:
    """A Mosaic exposure of the survey with CCDs over ``OVER`` (the new images' conditions)."""
    import numpy as np

    from lsdr.survey.simulate.exposures import plan_exposures
    from lsdr.survey.simulate.simulator import _ccds_over

    c = config(region)
    _, _, seq = np.random.SeedSequence(c.seed).spawn(3)
    for plan in plan_exposures(c, seq):
        if plan.camera == "mosaic" and _ccds_over(plan, c.binning, OVER):
            return str(plan.image_relpath())
    raise SystemExit(f"no Mosaic exposure over {OVER}")


def survey(
    name: str,
    region: grid.RaDecBox,
    work: Path,
    counts: list[int],
    report: dict[str, float | int | str],
) -> None:
    """Simulate, release, then the increments; their times and units into ``report``."""
    from lsdr.survey.simulate.simulator import add_exposure, simulate_survey

    root = work / name
    t0 = time.perf_counter()
    simulate_survey(root, config(region))
    report[f"{name}_simulate_s"] = time.perf_counter() - t0
    box = f"{region.ra_min},{region.ra_max},{region.dec_min},{region.dec_max}"
    report[f"{name}_release_s"] = lsdr(
        "run", "release", "--release-dir", str(root), "--region", box, *GRID, "--workers", "2"
    )
    report[f"{name}_bricks"] = len((root / "bricks.txt").read_text().split())
    print(f"{name}: release {report[f'{name}_release_s']:.1f} s", file=sys.stderr, flush=True)
    like = template(region)
    visit = 0
    try:
        for n in [*counts, 0]:
            for _ in range(n):
                visit += 1
                add_exposure(root, like, config=config(region), visit=visit, over=OVER, at=AT)
            before = attempts(root)
            seconds = lsdr("run", "nightly", "--release-dir", str(root), "--workers", "2")
            report[f"{name}_{n}_new_s"] = seconds
            report[f"{name}_{n}_new_started"] = as_text(started_by_phase(before, attempts(root)))
            print(f"{name}: {n} new: {seconds:.1f} s", file=sys.stderr, flush=True)
    finally:
        lsdr("server", "down", "--release-dir", str(root))  # the server the runs started


def main() -> None:
    """Parse arguments, run both surveys, print the report with its ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,10,100", help="new images per increment, in order")
    parser.add_argument("--out", type=Path, default=None, help="work directory (default: temp)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--surveys", default="fixed,larger", help="which surveys to run")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    work = args.out or Path(tempfile.mkdtemp(prefix="bench-nightly-"))
    report: dict[str, float | int | str] = {"work": str(work), "counts": args.counts}
    names = args.surveys.split(",")
    for name, region in (("fixed", FIXED), ("larger", LARGER)):
        if name in names:
            survey(name, region, work, counts, report)
    for name in names:
        base = float(report[f"{name}_{counts[0]}_new_s"])
        for n in counts[1:]:
            report[f"{name}_{n}_over_{counts[0]}_new"] = float(report[f"{name}_{n}_new_s"]) / base
    if len(names) == 2:
        for n in [*counts, 0]:
            ratio = float(report[f"larger_{n}_new_s"]) / float(report[f"fixed_{n}_new_s"])
            report[f"larger_over_fixed_{n}_new"] = ratio
        report["larger_over_fixed_release"] = float(report["larger_release_s"]) / float(
            report["fixed_release_s"]
        )
    emit(report, args.json)


if __name__ == "__main__":
    main()
