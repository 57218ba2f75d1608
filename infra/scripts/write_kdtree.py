"""Build the two named kd-trees of a survey-ccds ``.kd.fits`` file with astrometry.net's libkd.

Run by ``lsdr.survey.kdtree`` under the system Python (Debian's ``python3-astrometry``), as
an argument list: ``write_kdtree.py POINTS.npy CCDS_TREE.fits EXPNUM_TREE.fits``.
``POINTS.npy`` holds float64 rows (ra, dec, expnum) in the table's row order.  It writes the
``ccds`` tree over the CCD centres' unit vectors and the ``expnum`` tree (1-D, leaves of 60,
no bounding boxes, split dimensions), each in its own file; both keep a permutation array, so
a search returns row numbers of the table.  Only numpy and astrometry are imported.
"""

import sys

import numpy as np
from astrometry.libkd.spherematch import tree_build, tree_build_radec


def main(argv: list[str]) -> int:
    """Build and write both trees; exit status 0 on success."""
    if len(argv) != 3:
        sys.stderr.write("usage: write_kdtree.py POINTS.npy CCDS_TREE.fits EXPNUM_TREE.fits\n")
        return 2
    points = np.load(argv[0])
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        sys.stderr.write(f"{argv[0]}: expected a non-empty (N, 3) array\n")
        return 2
    ra = np.ascontiguousarray(points[:, 0], dtype=np.float64)
    dec = np.ascontiguousarray(points[:, 1], dtype=np.float64)
    ccds = tree_build_radec(ra, dec)
    ccds.set_name("ccds")
    ccds.write(argv[1])
    expnum = np.ascontiguousarray(points[:, 2:3], dtype=np.float64)
    ekd = tree_build(expnum, nleaf=60, bbox=False, split=True)
    ekd.set_name("expnum")
    ekd.write(argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
