"""Coadds benchmark: stage ``coadds`` of a full 3600² brick, fast resampling against the first one.

Reads the tims of one brick of a processed release (default: the demo brick 1804p325), then
runs ``stage_coadds`` twice on them in the same process, writing into scratch directories:
once as shipped (``resample_tim``) and once with ``resample_tim_reference`` (the first,
straightforward Lanczos-3 implementation) swapped in as the baseline.  Prints both times,
their ratio, the resampling-only times and the largest coadd-image difference between the two.
Run: ``.venv/bin/python bench/bench_coadds.py --release DIR [--brick NAME] [--json PATH]``
(the release is only read).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import fitsio
import numpy as np
from report import emit

from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.runbrick import coadds, resample
from lsdr.survey.runbrick.tims import stage_tims
from lsdr.survey.runbrick.types import BrickGeometry

BANDS = ("g", "r", "z")


def main() -> None:
    """Time stage ``coadds`` with the fast and the reference resampling; print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--release", type=Path, required=True)
    parser.add_argument("--brick", default="1804p325")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    geom = BrickGeometry.for_brick(args.brick)
    state = stage_tims(layout=ReleaseLayout(args.release), geom=geom, bands=BANDS)
    tims = state["tims"]
    scratch = Path(tempfile.mkdtemp(prefix="lsdr-bench-coadds-"))
    seconds: dict[str, float] = {}
    resample_seconds: dict[str, float] = {}
    layouts: dict[str, ReleaseLayout] = {}
    try:
        for name, fn in (
            ("fast", resample.resample_tim),
            ("reference", resample.resample_tim_reference),
        ):
            t0 = time.perf_counter()
            for i, tim in enumerate(tims):
                fn(tim, geom, i)
            resample_seconds[name] = time.perf_counter() - t0
            layouts[name] = ReleaseLayout(scratch / name)
            coadds.resample_tim = fn  # the stage looks the function up at call time
            try:
                t0 = time.perf_counter()
                coadds.stage_coadds(layout=layouts[name], geom=geom, bands=BANDS, **state)
                seconds[name] = time.perf_counter() - t0
            finally:
                coadds.resample_tim = resample.resample_tim
        worst = 0.0
        for band in BANDS:
            paths = [layouts[n].coadd(args.brick, "image", band) for n in ("fast", "reference")]
            if not paths[1].exists():
                continue
            a, b = (fitsio.read(str(p)) for p in paths)
            worst = max(worst, float(np.abs(a - b).max() / np.abs(b).max()))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    report: dict[str, float | int | str] = {
        "brick": args.brick,
        "tims": len(tims),
        "coadds_seconds": round(seconds["fast"], 2),
        "reference_coadds_seconds": round(seconds["reference"], 2),
        "speedup_vs_reference": round(seconds["reference"] / seconds["fast"], 2),
        "resample_seconds": round(resample_seconds["fast"], 2),
        "reference_resample_seconds": round(resample_seconds["reference"], 2),
        "resample_speedup": round(resample_seconds["reference"] / resample_seconds["fast"], 2),
        "max_image_difference_rel": worst,
    }
    emit(report, args.json)


if __name__ == "__main__":
    main()
