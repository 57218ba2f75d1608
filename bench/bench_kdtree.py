"""kd-tree CCD file benchmark: lsdr's numpy tree builder against baselines timed in the same run.

- sort baseline (always): one ``np.lexsort`` of the N points by (ra, dec, expnum), the least a
  sort-based build of a tree must do once per level;
- libkd baseline (when astrometry.net's libkd is importable by ``--libkd-python``, e.g. the
  real legacypipe build's Python): Debian's C ``tree_build_radec`` and ``tree_build`` on the same
  points, timed inside that Python.
Run: ``.venv/bin/python bench/bench_kdtree.py [--ccds N] [--libkd-python PATH] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from report import emit

from lsdr.survey.pretractor.kdtree import ccd_trees

LIBKD_TIMER = """
import sys, time, numpy as np
from astrometry.libkd.spherematch import tree_build, tree_build_radec
p = np.load(sys.argv[1])
best = 1e9
for _ in range(3):
    t0 = time.perf_counter()
    tree_build_radec(np.ascontiguousarray(p[:, 0]), np.ascontiguousarray(p[:, 1]))
    tree_build(np.ascontiguousarray(p[:, 2:3]), nleaf=60, bbox=False, split=True)
    best = min(best, time.perf_counter() - t0)
print(best)
"""


def ccd_rows(n: int, seed: int = 1) -> np.ndarray:
    """``n`` CCD centres uniform on the sphere, 60 CCDs an exposure (DECam-like ties)."""
    rng = np.random.default_rng(seed)
    rows = np.zeros(n, [("ra", "f8"), ("dec", "f8"), ("expnum", "i8")])
    rows["ra"] = rng.uniform(0, 360, n)
    rows["dec"] = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    rows["expnum"] = np.arange(n) // 60
    return rows


def best_of(fn: object, repeat: int = 3) -> float:
    """Fastest wall time of ``repeat`` calls, seconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return min(times)


def libkd_seconds(python: Path, rows: np.ndarray) -> float | None:
    """libkd's build time for the same points, or None when that Python lacks libkd."""
    with tempfile.TemporaryDirectory() as tmp:
        points = Path(tmp) / "p.npy"
        np.save(points, np.stack([rows["ra"], rows["dec"], rows["expnum"]], axis=1))
        done = subprocess.run(
            [str(python), "-c", LIBKD_TIMER, str(points)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    return float(done.stdout.strip()) if done.returncode == 0 else None


def main(argv: list[str]) -> None:
    """Time the builds and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ccds", type=int, default=1_000_000)
    parser.add_argument("--libkd-python", type=Path, default=Path("/usr/bin/python3"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = ccd_rows(args.ccds)
    lsdr_s = best_of(lambda: ccd_trees(rows))
    sort_s = best_of(lambda: np.lexsort((rows["expnum"], rows["dec"], rows["ra"])))
    report: dict[str, float | int | str] = {
        "ccds": args.ccds,
        "lsdr build s": lsdr_s,
        "one lexsort s": sort_s,
        "lsdr / one lexsort": lsdr_s / sort_s,
    }
    libkd_s = libkd_seconds(args.libkd_python, rows)
    if libkd_s is None:
        report["libkd"] = f"not importable by {args.libkd_python}"
    else:
        report["libkd build s"] = libkd_s
        report["lsdr / libkd"] = lsdr_s / libkd_s
    emit(report, args.json)


if __name__ == "__main__":
    main(sys.argv[1:])
