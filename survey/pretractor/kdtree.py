"""The unified kd-tree CCD file, ``survey-ccds-<dr>.kd.fits``, written by lsdr in libkd's format.

legacypipe's ``create_kdtrees.py`` writes (checked on the real ``survey-ccds-1.kd.fits`` files of
its test data): an empty primary HDU, **HDU 1 the CCD table** (rows with ``ccd_cuts == 0``),
then the HDUs of a kd-tree named ``ccds`` over the unit vectors of the CCD centres (ra, dec),
then those of a kd-tree named ``expnum`` over the exposure numbers.  runbrick reads HDU 1 with
``fits_table(fn, rows=I)`` for the rows ``I`` a search of the ``ccds`` tree returns
(``ccds_touching_wcs``), and ``find_ccds`` searches the ``expnum`` tree.

No PyPI package ships astrometry.net's libkd and Debian's lacks ``startree``, so lsdr builds the
trees itself with numpy, as libkd's ``kdtree_build`` builds a tree of doubles ("ddd"):

- ``levels`` from the point count and the leaf size (libkd's ``kdtree_compute_levels``); the
  nodes form a complete binary tree in heap order, ``2**levels - 1`` of them;
- an interior node owning tree positions ``L..R`` splits at ``m = (1 + L + R) // 2`` along the
  dimension of largest range (the last one on a tie): its ``m - L`` smallest values go left;
- the ``ccds`` tree keeps every node's bounding box (``tree_build_radec``: leaves of 16); the
  ``expnum`` tree keeps split values and dimensions instead (legacypipe's recipe: leaves of 60,
  ``bbox=False, split=True``); both keep the permutation, so row numbers refer to HDU 1 in the
  order written.

The node ranges depend on the point count alone, and each node's points are the same set as
libkd's wherever split values are not tied, so the trees equal libkd's node by node but for the
order of points inside a leaf (``tests/test_kdtree.py`` compares them with Debian's libkd and
runs the real legacypipe on the file).  The file is written atomically.  It is an index: the
``.fits.gz`` tables stay.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.errors import InputFileError, SurveyError
from lsdr.survey.core.fileio import atomic_path

log = logging.getLogger(__name__)

BLOCK = 2880
"""FITS block size, bytes."""
CCDS_LEAF = 16
"""Leaf size of the ``ccds`` tree (libkd's default, which ``tree_build_radec`` uses)."""
EXPNUM_LEAF = 60
"""Leaf size of the ``expnum`` tree (legacypipe's ``try_expnum_kdtree`` recipe)."""
LITTLE_ENDIAN = "04:03:02:01"
"""libkd's ``ENDIAN`` card for little-endian data (a u32 0x01020304 as stored)."""
FITS_VERSION = 1
"""libkd's ``KDT_VER``."""


@dataclass(frozen=True)
class KdTree:
    """One libkd tree of doubles: points in tree order and the arrays libkd stores with them."""

    name: str
    data: npt.NDArray[np.float64]
    """(N, D) points in tree order."""
    perm: npt.NDArray[np.uint32]
    """For each tree position, the point's index in the array the tree was built from."""
    lr: npt.NDArray[np.uint32]
    """For each leaf, the tree position of its last point."""
    bb: npt.NDArray[np.float64] | None
    """(nodes, 2, D) low and high corners of each node's points, or None."""
    split: npt.NDArray[np.float64] | None
    """Each interior node's split value (its right child's smallest value), or None."""
    splitdim: npt.NDArray[np.uint8] | None
    """Each interior node's split dimension, with ``split``."""

    @property
    def nnodes(self) -> int:
        """Nodes of the complete binary tree."""
        return 2 * len(self.lr) - 1


def tree_levels(n: int, leaf: int) -> int:
    """Levels of a libkd tree of ``n`` points with leaves of about ``leaf`` (at least half)."""
    nodes, levels = n // leaf, 1
    while nodes:
        nodes >>= 1
        levels += 1
    return levels


def radec_unit_vectors(ra: npt.ArrayLike, dec: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """(N, 3) unit vectors of (RA, Dec) in degrees, as ``tree_build_radec`` computes them."""
    r = np.deg2rad(np.asarray(ra, np.float64))
    d = np.deg2rad(np.asarray(dec, np.float64))
    cosd = np.cos(d)
    return np.stack([cosd * np.cos(r), cosd * np.sin(r), np.sin(d)], axis=1)


def build_tree(points: npt.ArrayLike, name: str, *, leaf: int, bbox: bool, split: bool) -> KdTree:
    """Build a libkd-layout tree over ``points`` (N, D); see the module docstring for the rule.

    Each level is done at once: the points of all its nodes are sorted by (node, value along
    the node's split dimension, current position), so a tie keeps the order it had.
    """
    data = np.ascontiguousarray(points, dtype=np.float64)
    if data.ndim != 2 or len(data) == 0:
        raise SurveyError(f"kd-tree {name}: expected a non-empty (N, D) array of points")
    if not np.all(np.isfinite(data)):
        raise SurveyError(f"kd-tree {name}: points with non-finite coordinates")
    if not (bbox or split) or leaf < 2:
        raise ValueError("a kd-tree needs bounding boxes or splits, and leaves of 2 or more")
    n, ndim = data.shape
    levels = tree_levels(n, leaf)
    nbottom = 1 << (levels - 1)
    ninterior = nbottom - 1
    nnodes = nbottom + ninterior
    # Node ranges depend on n alone; with leaves of >= 2 points no node is empty.
    first = np.zeros(nnodes, np.int64)
    last = np.zeros(nnodes, np.int64)
    last[0] = n - 1
    order = np.arange(n)
    boxes = np.zeros((nnodes, 2, ndim)) if bbox else None
    splits = np.zeros(ninterior) if split else None
    dims = np.zeros(ninterior, np.uint8) if split else None
    positions = np.arange(n)
    for level in range(levels - 1):
        nodes = np.arange((1 << level) - 1, (1 << (level + 1)) - 1)
        lo_i, hi_i = first[nodes], last[nodes]
        current = data[order]
        lo = np.minimum.reduceat(current, lo_i, axis=0)
        hi = np.maximum.reduceat(current, lo_i, axis=0)
        if boxes is not None:
            boxes[nodes, 0], boxes[nodes, 1] = lo, hi
        extent = hi - lo
        dim = ndim - 1 - np.argmax(extent[:, ::-1], axis=1)
        owner = np.repeat(np.arange(len(nodes)), hi_i - lo_i + 1)
        values = current[positions, dim[owner]]
        order = order[np.lexsort((positions, values, owner))]
        middle = (1 + lo_i + hi_i) // 2
        first[2 * nodes + 1], last[2 * nodes + 1] = lo_i, middle - 1
        first[2 * nodes + 2], last[2 * nodes + 2] = middle, hi_i
        if splits is not None and dims is not None:
            splits[nodes] = data[order[middle], dim]
            dims[nodes] = dim
    leaves = np.arange(ninterior, nnodes)
    tree_data = data[order]
    if boxes is not None:
        boxes[leaves, 0] = np.minimum.reduceat(tree_data, first[leaves], axis=0)
        boxes[leaves, 1] = np.maximum.reduceat(tree_data, first[leaves], axis=0)
    return KdTree(
        name=name,
        data=tree_data,
        perm=order.astype(np.uint32),
        lr=last[leaves].astype(np.uint32),
        bb=boxes,
        split=splits,
        splitdim=dims,
    )


def ccd_trees(rows: np.ndarray) -> tuple[KdTree, KdTree]:
    """The ``ccds`` tree over the CCD centres' unit vectors and the ``expnum`` tree."""
    centres = radec_unit_vectors(rows["ra"], rows["dec"])
    ccds = build_tree(centres, "ccds", leaf=CCDS_LEAF, bbox=True, split=False)
    expnum = np.asarray(rows["expnum"], np.float64)[:, None]
    return ccds, build_tree(expnum, "expnum", leaf=EXPNUM_LEAF, bbox=False, split=True)


def write_ccds_kdtree(ccds: np.ndarray | Path, out: Path, *, cut: bool = True) -> Path:
    """Write the kd-tree CCD file ``out`` atomically from a CCD table (array or FITS file).

    ``cut`` keeps only rows with ``ccd_cuts == 0`` (``create_kdtrees.py`` does the same unless
    ``--no-cut``).  Raises :class:`SurveyError` when no row is left to index.
    """
    rows = _read_table(ccds) if isinstance(ccds, Path) else np.asarray(ccds)
    if cut and "ccd_cuts" in (rows.dtype.names or ()):
        rows = rows[rows["ccd_cuts"] == 0]
    if len(rows) == 0:
        raise SurveyError(f"{out.name}: no CCDs with ccd_cuts == 0 to index")
    for column in ("ra", "dec", "expnum"):
        if not np.all(np.isfinite(np.asarray(rows[column], np.float64))):
            raise SurveyError(f"{out.name}: CCD rows with non-finite {column}")
    trees = ccd_trees(rows)
    import fitsio

    with atomic_path(out) as tmp:
        fitsio.write(str(tmp), rows, extname="CCDS", clobber=True)
        with tmp.open("ab") as sink:
            for tree in trees:
                sink.write(tree_hdus(tree))
    log.info("wrote %s: %d CCDs", out, len(rows))
    return out


def read_ccds_kdtree(path: Path) -> npt.NDArray[np.void]:
    """The CCD table (HDU 1) of a kd-tree CCD file."""
    return _read_table(path)


def _read_table(path: Path) -> npt.NDArray[np.void]:
    import fitsio

    try:
        table: npt.NDArray[np.void] = fitsio.read(str(path), ext=1)
    except (OSError, ValueError) as err:
        raise InputFileError(f"{path}, HDU 1: cannot read CCD table ({err})") from err
    return table


# -- libkd's FITS layout ------------------------------------------------------------------------
def tree_hdus(tree: KdTree) -> bytes:
    """The tree's FITS extensions as libkd writes them: a header HDU, then one table per array.

    Each array is a one-column binary table named ``kdtree_<array>_<tree>`` whose rows are raw
    little-endian items (libkd's "fitsbin chunks"), in libkd's order: lr, perm, bb, split,
    splitdim, data.
    """
    n, ndim = tree.data.shape
    header = {
        "ENDIAN": LITTLE_ENDIAN,
        "KDT_NAME": tree.name,
        "KDT_NDAT": n,
        "KDT_NDIM": ndim,
        "KDT_NNOD": tree.nnodes,
        "KDT_VER": FITS_VERSION,
        "KDT_EXT": "double",
        "KDT_INT": "double",
        "KDT_DATA": "double",
        "KDT_LINL": False,
    }
    chunks: list[tuple[str, np.ndarray | None, int]] = [("header", None, 0)]
    chunks.append(("lr", tree.lr.astype("<u4"), 4))
    chunks.append(("perm", tree.perm.astype("<u4"), 4))
    if tree.bb is not None:
        chunks.append(("bb", tree.bb.astype("<f8"), 16 * ndim))
    if tree.split is not None and tree.splitdim is not None:
        chunks.append(("split", tree.split.astype("<f8"), 8))
        chunks.append(("splitdim", tree.splitdim.astype("u1"), 1))
    chunks.append(("data", tree.data.astype("<f8"), 8 * ndim))
    out = bytearray()
    for kind, array, itemsize in chunks:
        table = f"kdtree_{kind}_{tree.name}"
        if array is None:
            out += _chunk_hdu(table, 0, 0, b"", header)
        else:
            out += _chunk_hdu(table, itemsize, len(array), array.tobytes(), {})
    return bytes(out)


def _chunk_hdu(
    table: str, itemsize: int, nrows: int, payload: bytes, extra: dict[str, object]
) -> bytes:
    """One fitsbin chunk: a binary table of ``nrows`` rows of ``itemsize`` raw bytes."""
    from astropy.io import fits

    if len(payload) != itemsize * nrows:
        raise ValueError(f"{table}: {len(payload)} bytes for {nrows} rows of {itemsize}")
    header = fits.Header(
        [
            ("XTENSION", "BINTABLE", "binary table extension"),
            ("BITPIX", 8, "bytes"),
            ("NAXIS", 2, "a table of bytes"),
            ("NAXIS1", itemsize, "bytes in a row"),
            ("NAXIS2", nrows, "rows"),
            ("PCOUNT", 0, "no heap"),
            ("GCOUNT", 1, "one group"),
            ("TFIELDS", 1, "one column"),
            ("TFORM1", f"{itemsize}A", "raw items"),
            ("TTYPE1", table, "libkd table name"),
        ]
    )
    for key, value in extra.items():
        header[key] = value
    text = str(header.tostring(sep="", endcard=True, padding=True)).encode("ascii")
    pad = -len(payload) % BLOCK
    return text + payload + b"\0" * pad
