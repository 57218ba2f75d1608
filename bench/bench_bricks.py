"""Brick-grid benchmark: lookups for 10^6 points and bricks touching 10^5 CCD footprints.

Each lsdr timing is reported as a ratio against a plain-numpy baseline timed in the same run
on the same data, so the numbers compare across machines:
- lookup baseline: the bare row/column arithmetic (floor of Dec and RA) with no validation
  and no id computation: the least work any grid lookup must do;
- touching baseline: the bounding-box estimate (bricks holding each CCD's corners, no
  polygon test): the cheapest numpy answer to the same question, which misses bricks that a
  CCD edge crosses between corners.
Run: ``.venv/bin/python bench/bench_bricks.py [--points N] [--ccds N] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from report import emit

from lsdr.survey.core import bricks as grid


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Fastest wall time of ``repeat`` calls, seconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def random_points(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Points uniform on the sphere."""
    return rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))


def random_ccd_corners(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Corners of n DECam-sized CCDs (0.15 x 0.30 deg) at random places and rotations."""
    ra0, dec0 = random_points(n, rng)
    dec0 = np.clip(dec0, -85, 85)
    half_w, half_h = 0.075, 0.15
    ang = rng.uniform(0, np.pi, n)
    dx = np.array([-half_w, -half_w, half_w, half_w])
    dy = np.array([-half_h, half_h, half_h, -half_h])
    xi = dx[None, :] * np.cos(ang)[:, None] - dy[None, :] * np.sin(ang)[:, None]
    eta = dx[None, :] * np.sin(ang)[:, None] + dy[None, :] * np.cos(ang)[:, None]
    dec = dec0[:, None] + eta
    ra = (ra0[:, None] + xi / np.cos(np.radians(dec))) % 360.0
    return ra, dec


def baseline_lookup(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Plain numpy: brick row and column by floor arithmetic only."""
    row = np.floor((dec + 90.125) / 0.25).astype(np.int64)
    return row * 2000 + np.floor(ra / 360.0 * grid.NCOL[row]).astype(np.int64)


def baseline_touching(cra: np.ndarray, cdec: np.ndarray) -> np.ndarray:
    """Plain numpy: unique brick ids holding any corner of each CCD (no polygon test)."""
    ids = grid.brickid_radec(cra.ravel(), cdec.ravel()).reshape(cra.shape)
    pairs = np.stack([np.repeat(np.arange(len(cra)), 4), ids.ravel()], axis=1)
    return np.unique(pairs, axis=0)


def main() -> None:
    """Run the benchmark and print (and optionally save) the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--ccds", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rng = np.random.default_rng(42)

    ra, dec = random_points(args.points, rng)
    t_base = best_of(lambda: baseline_lookup(ra, dec), args.repeat)
    t_lsdr = best_of(lambda: grid.brickid_radec(ra, dec), args.repeat)

    cra, cdec = random_ccd_corners(args.ccds, rng)
    t_tbase = best_of(lambda: baseline_touching(cra, cdec), args.repeat)
    t_touch = best_of(lambda: grid.bricks_touching_polygons(cra, cdec), args.repeat)
    n_pairs = len(grid.bricks_touching_polygons(cra, cdec)[0])
    n_base = len(baseline_touching(cra, cdec))

    result = {
        "points": args.points,
        "lookups_per_second": args.points / t_lsdr,
        "lookup_seconds": t_lsdr,
        "lookup_baseline_seconds": t_base,
        "lookup_ratio_vs_numpy": t_lsdr / t_base,
        "ccds": args.ccds,
        "touching_seconds": t_touch,
        "touching_baseline_seconds": t_tbase,
        "touching_ratio_vs_numpy": t_touch / t_tbase,
        "touching_pairs": n_pairs,
        "baseline_pairs_missed_fraction": 1.0 - n_base / n_pairs,
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()
