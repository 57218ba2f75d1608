"""astrometry.net's own libkd as the judge of lsdr's kd-tree files (run under legacypipe's Python).

``libkd_probe.py build POINTS.npy CCDS.fits EXPNUM.fits``: libkd builds the two trees of a CCD
file from (ra, dec, expnum) rows as legacypipe's tools do (``tree_build_radec``; ``tree_build``
with leaves of 60, ``bbox=False, split=True``) and writes each to its own file.
``libkd_probe.py search KD.fits QUERIES.json``: libkd opens both trees of a file and answers
cone searches ``[ra, dec, radius]`` and expnum searches; prints JSON of sorted row lists.
Only numpy and astrometry are imported, as legacypipe's Python has them.
"""

import json
import sys

import numpy as np
from astrometry.libkd.spherematch import tree_build, tree_build_radec, tree_open, tree_search_radec


def build(points_npy: str, ccds_out: str, expnum_out: str) -> None:
    """libkd's trees over the points, written as libkd writes them."""
    points = np.load(points_npy)
    ccds = tree_build_radec(np.ascontiguousarray(points[:, 0]), np.ascontiguousarray(points[:, 1]))
    ccds.set_name("ccds")
    ccds.write(ccds_out)
    expnum = tree_build(np.ascontiguousarray(points[:, 2:3]), nleaf=60, bbox=False, split=True)
    expnum.set_name("expnum")
    expnum.write(expnum_out)


def search(kd_file: str, queries_json: str) -> None:
    """libkd's answers to the queries on the file's ``ccds`` and ``expnum`` trees."""
    queries = json.loads(queries_json)
    ccds = tree_open(kd_file, "ccds")
    expnum = tree_open(kd_file, "expnum")
    cones = [
        sorted(int(i) for i in tree_search_radec(ccds, r, d, rad)) for r, d, rad in queries["cones"]
    ]
    found = [
        sorted(int(i) for i in expnum.search(np.array([float(e)]), 0.5, 0, 0))
        for e in queries["expnums"]
    ]
    print(json.dumps({"cones": cones, "expnums": found}))


if __name__ == "__main__":
    {"build": build, "search": search}[sys.argv[1]](*sys.argv[2:])
