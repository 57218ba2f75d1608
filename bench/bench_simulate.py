"""Simulator benchmark: the cookbook's 15-brick survey at the demo binning, against an I/O floor.

The target is "under a minute on 2 cores".  The absolute time is printed, and also a ratio
against a baseline timed in the same run on the same machine: writing the same number of
pixels of plain Gaussian noise as the same three RICE-compressed planes per CCD (ooi, ood,
oow) with the same two processes, i.e. the least any simulator writing these files must spend.
Run: ``.venv/bin/python bench/bench_simulate.py [--workers N] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from report import emit

from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.simulate.config import SimulationConfig
from lsdr.survey.simulate.simulator import simulate_survey


def write_noise_exposure(args: tuple[Path, int, list[tuple[int, int]]]) -> None:
    """Baseline unit: one exposure's CCDs as noise, written like the simulator's three planes."""
    import fitsio

    path, seed, shapes = args
    rng = np.random.default_rng(seed)
    for kind in ("ooi", "ood", "oow"):
        with fitsio.FITS(str(path.with_suffix(f".{kind}.fits.fz")), "rw", clobber=True) as fits:
            fits.write(None)
            for height, width in shapes:
                noise = rng.standard_normal((height, width), dtype=np.float32)
                if kind == "ood":
                    fits.write(np.zeros((height, width), np.int16), compress="RICE")
                else:
                    fits.write(noise, compress="RICE", qlevel=4.0)


def main() -> None:
    """Time the demo simulation and the noise-writing floor; print both and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="lsdr-bench-sim-"))
    try:
        t0 = time.perf_counter()
        result = simulate_survey(scratch / "survey", SimulationConfig(workers=args.workers))
        simulate_seconds = time.perf_counter() - t0

        import fitsio

        truth = fitsio.read(str(ReleaseLayout(scratch / "survey").truth_ccds))
        per_exposure: dict[str, list[tuple[int, int]]] = {}
        for row in truth:
            per_exposure.setdefault(row["image_filename"], []).append(
                (int(row["height"]), int(row["width"]))
            )
        jobs = [
            (scratch / f"noise-{i}", i, shapes) for i, shapes in enumerate(per_exposure.values())
        ]
        t0 = time.perf_counter()
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            list(pool.map(write_noise_exposure, jobs))
        baseline_seconds = time.perf_counter() - t0
        pixels = int(sum(int(r["height"]) * int(r["width"]) for r in truth))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    report = {
        "exposures": result.exposures,
        "ccds": result.ccds,
        "sources": result.sources,
        "pixels": pixels,
        "workers": args.workers,
        "simulate_seconds": round(simulate_seconds, 2),
        "noise_write_baseline_seconds": round(baseline_seconds, 2),
        "ratio_vs_baseline": round(simulate_seconds / baseline_seconds, 2),
    }
    emit(report, args.json)


if __name__ == "__main__":
    main()
