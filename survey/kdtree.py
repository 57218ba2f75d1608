"""The unified kd-tree CCD file, ``survey-ccds-<dr>.kd.fits``, in the layout legacypipe reads.

legacypipe's ``create_kdtrees.py`` writes (checked on the real ``survey-ccds-1.kd.fits`` files of
its test data): an empty primary HDU, **HDU 1 the CCD table** (rows with ``ccd_cuts == 0``),
then the HDUs of a kd-tree named ``ccds`` over the unit vectors of the CCD centres (ra, dec),
then those of a kd-tree named ``expnum`` over the exposure numbers.  runbrick reads HDU 1 with
``fits_table(fn, rows=I)`` for the rows ``I`` a search of the ``ccds`` tree returns
(``ccds_touching_wcs``), and ``find_ccds`` searches the ``expnum`` tree.

Its tools (``startree``, ``tabmerge``) are not in Debian, so the trees are built here with
Debian's ``python3-astrometry`` libkd under the system Python (a subprocess, argument list,
``infra/scripts/write_kdtree.py``); each tree keeps its permutation array, so row numbers refer
to HDU 1 in the order written.  The file is then assembled from the table and the trees' HDUs,
block by block, and renamed into place.  It is an index: the ``.fits.gz`` tables stay.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lsdr.survey.errors import InputFileError, SurveyError
from lsdr.survey.fileio import atomic_path

log = logging.getLogger(__name__)

SYSTEM_PYTHON = Path("/usr/bin/python3")
"""The Python that has Debian's astrometry.net libkd (``python3-astrometry``)."""
SCRIPT = Path(__file__).resolve().parents[1] / "infra" / "scripts" / "write_kdtree.py"
"""The tree builder run under :data:`SYSTEM_PYTHON`."""
BLOCK = 2880
"""FITS block size, bytes."""


def kdtree_python() -> Path:
    """The Python used to build trees: ``LSDR_KDTREE_PYTHON`` if set, else the system one."""
    return Path(os.environ.get("LSDR_KDTREE_PYTHON", str(SYSTEM_PYTHON)))


def write_ccds_kdtree(
    ccds: np.ndarray | Path,
    out: Path,
    *,
    cut: bool = True,
    python: Path | None = None,
) -> Path:
    """Write the kd-tree CCD file ``out`` atomically from a CCD table (array or FITS file).

    ``cut`` keeps only rows with ``ccd_cuts == 0`` (``create_kdtrees.py`` does the same unless
    ``--no-cut``).  Raises :class:`SurveyError` when no row is left to index.
    """
    rows = _read_table(ccds) if isinstance(ccds, Path) else np.asarray(ccds)
    if cut and "ccd_cuts" in (rows.dtype.names or ()):
        rows = rows[rows["ccd_cuts"] == 0]
    if len(rows) == 0:
        raise SurveyError(f"{out.name}: no CCDs with ccd_cuts == 0 to index")
    points = np.stack(
        [
            np.asarray(rows["ra"], np.float64),
            np.asarray(rows["dec"], np.float64),
            np.asarray(rows["expnum"], np.float64),
        ],
        axis=1,
    )
    if not np.all(np.isfinite(points)):
        raise SurveyError(f"{out.name}: CCD rows with non-finite ra, dec or expnum")
    with tempfile.TemporaryDirectory(prefix="lsdr-kdtree-") as tmpdir:
        work = Path(tmpdir)
        np.save(work / "points.npy", points)
        ccds_tree, expnum_tree = work / "ccds-tree.fits", work / "expnum-tree.fits"
        _run_builder(python or kdtree_python(), work / "points.npy", ccds_tree, expnum_tree)
        import fitsio

        with atomic_path(out) as tmp:
            fitsio.write(str(tmp), rows, extname="CCDS", clobber=True)
            with tmp.open("ab") as sink:
                for tree in (ccds_tree, expnum_tree):
                    sink.write(extensions_bytes(tree))
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


def _run_builder(python: Path, points: Path, ccds_tree: Path, expnum_tree: Path) -> None:
    """Run the libkd tree builder; a clear error if its Python or libkd is missing."""
    command = [str(python), str(SCRIPT), str(points), str(ccds_tree), str(expnum_tree)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=3600)
    except OSError as err:
        raise SurveyError(
            f"cannot run {python} for the kd-tree ({err.strerror}): install Debian's "
            "python3-astrometry or set LSDR_KDTREE_PYTHON"
        ) from err
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SurveyError(
            f"kd-tree builder failed (exit {done.returncode}) under {python}: " + " | ".join(tail)
        )


def extensions_bytes(path: Path) -> bytes:
    """Every HDU of a FITS file after the (data-less) primary HDU, as raw bytes."""
    data = path.read_bytes()
    offset = 0
    while True:
        block = data[offset : offset + BLOCK]
        if len(block) < BLOCK:
            raise InputFileError(f"{path}: primary header has no END card")
        offset += BLOCK
        cards = [block[i : i + 80] for i in range(0, BLOCK, 80)]
        if any(card.rstrip() == b"END" for card in cards):
            break
    primary = data[:offset]
    if b"NAXIS   =                    0" not in primary:
        raise InputFileError(f"{path}: primary HDU has data; expected an empty primary")
    return data[offset:]
