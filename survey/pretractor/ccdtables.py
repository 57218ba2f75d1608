"""Merging the per-image CCD tables into the release's survey-ccds and ccds-annotated tables.

This is the cookbook's chain ``legacy_zeropoints_merge.py`` → ``merge_annotated.py`` →
``update_ccd_cuts.py`` in one step: the ``<base>-annotated.fits`` files of the zeropoint phase
are stacked, ``ccd_cuts`` is recomputed (:mod:`lsdr.survey.pretractor.ccdcuts`), and the rows are
split
per camera and band into ``ccds-annotated-<camera>-<band>.fits.gz`` (every annotated column)
and ``survey-ccds-<camera>-<band>.fits.gz`` (the survey-ccds columns runbrick reads).

* ``cut=True`` computes the quality bits; ``cut=False`` sets ``ccd_cuts = 0`` on every row
  (no quality cut: every CCD is usable).  Either way every row is **kept** in the tables, as in
  the released survey-ccds files; runbrick and the kd-tree use only rows with ``ccd_cuts == 0``.
  (``legacy_zeropoints_merge.py --cut`` instead dropped rows with ``ccd_cuts != 0``, which on
  fresh zeropoints, all 0x1, drops everything.)
* ``cut_expnum=True`` drops rows with ``expnum <= 0`` (``--cut-expnum``: CCDs whose zeropoints
  failed before the exposure number was known).

Each merge replaces the previous one: per camera-band tables it no longer writes are removed,
and so is the kd-tree file, which indexed the old tables (legacypipe prefers it when present).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.cameras import CAMERAS
from lsdr.survey.core.errors import InputFileError, SurveyError
from lsdr.survey.core.fileio import atomic_path
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.pretractor.ccdcuts import CutOptions, compute_ccd_cuts
from lsdr.survey.pretractor.ccdschema import ANNOTATED_DTYPE, CCD_CUTS, SURVEY_CCDS_DTYPE

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = (
    "image_filename", "image_hdu", "expnum", "ccdname", "filter", "camera", "exptime",
    "mjd_obs", "fwhm", "width", "height", "sig1", "ccdzpt", "zpt", "crval1", "crval2",
    "crpix1", "crpix2", "cd1_1", "cd1_2", "cd2_1", "cd2_2", "ra", "dec",
)  # fmt: skip
"""Columns an annotated file must have (what runbrick and the cuts cannot do without); the
other survey-ccds and annotated columns are zero-filled when absent, as legacypipe's
``merge_tables(columns='fillzero')`` does."""


@dataclass(frozen=True)
class MergedTables:
    """What a merge wrote, and how the cuts fell."""

    survey_ccds: dict[tuple[str, str], Path]
    annotated: dict[tuple[str, str], Path]
    n_rows: int
    n_kept: int
    """Rows with ccd_cuts == 0."""
    cut_counts: dict[str, int]
    """Bit name → rows with that bit set (bits with no rows are left out)."""
    dropped_expnums: tuple[int, ...]
    """Exposure numbers of the rows removed by cut_expnum (expnum <= 0: usually just 0)."""
    dropped_images: tuple[str, ...] = field(default=())
    """image_filename of the rows removed by cut_expnum."""


def read_annotated(path: Path) -> npt.NDArray[np.void]:
    """Read one ``<base>-annotated.fits`` (HDU 1) into ``ANNOTATED_DTYPE`` rows."""
    import fitsio

    try:
        table = fitsio.read(str(path), ext=1)
    except (OSError, ValueError, IndexError) as err:
        raise InputFileError(f"{path}, HDU 1: cannot read the annotated CCD table ({err})") from err
    if table.dtype.names is None:
        raise InputFileError(f"{path}, HDU 1: not a table")
    return conform(table, ANNOTATED_DTYPE, f"{path}, HDU 1")


def conform(table: np.ndarray, dtype: np.dtype[np.void], where: str) -> npt.NDArray[np.void]:
    """Rows of ``dtype`` from any table with (a superset or subset of) its columns.

    Missing :data:`REQUIRED_COLUMNS` are an :class:`InputFileError` naming ``where``; other
    missing columns are zero; strings are stripped of trailing blanks and must fit.
    """
    names = {n.lower(): n for n in table.dtype.names or ()}
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise InputFileError(f"{where}: missing columns {missing}")
    out = np.zeros(len(table), dtype)
    for col in dtype.names or ():
        if col not in names:
            continue
        values = np.asarray(table[names[col]])
        target = dtype[col]
        if target.kind == "S":
            if values.dtype.kind == "U":
                values = np.char.encode(values, "ascii")
            values = np.char.rstrip(values.astype(bytes))
            width = target.itemsize
            if values.size and int(np.char.str_len(values).max()) > width:
                raise InputFileError(
                    f"{where}: column {col} has values longer than {width} characters"
                )
        try:
            out[col] = values.reshape(out[col].shape) if values.shape != out[col].shape else values
        except (ValueError, TypeError) as err:
            raise InputFileError(
                f"{where}: column {col} has an unexpected type or shape ({err})"
            ) from err
    return out


def merge_ccd_tables(
    layout: ReleaseLayout,
    annotated_files: Sequence[Path],
    *,
    cut: bool = True,
    cut_expnum: bool = True,
    cut_options: CutOptions | None = None,
) -> MergedTables:
    """Stack annotated files, compute ccd_cuts and write the per camera-band tables atomically."""
    if not annotated_files:
        raise SurveyError("no annotated CCD files to merge: run the zeropoints phase first")
    parts = [read_annotated(Path(p)) for p in annotated_files]
    rows = np.concatenate(parts) if parts else np.zeros(0, ANNOTATED_DTYPE)
    dropped_expnums: tuple[int, ...] = ()
    dropped_images: tuple[str, ...] = ()
    if cut_expnum:
        bad = rows["expnum"] <= 0
        if np.any(bad):
            dropped_expnums = tuple(sorted({int(e) for e in rows["expnum"][bad]}))
            dropped_images = tuple(sorted({v.decode() for v in rows["image_filename"][bad]}))
            log.info("cut-expnum: dropping %d CCDs with expnum <= 0", int(bad.sum()))
            rows = rows[~bad]
    rows = rows[np.lexsort((rows["image_hdu"], rows["image_filename"]))]
    same = (rows["image_filename"][1:] == rows["image_filename"][:-1]) & (
        rows["image_hdu"][1:] == rows["image_hdu"][:-1]
    )
    if np.any(same):
        first = rows["image_filename"][1:][same][0].decode()
        raise SurveyError(
            f"{int(same.sum())} duplicated (image_filename, image_hdu) rows among the annotated "
            f"files (e.g. {first}): the same image was given twice"
        )
    cameras = np.char.strip(rows["camera"])
    bands = np.char.strip(rows["filter"])
    rows["ccd_cuts"] = 0
    for cam in np.unique(cameras):
        sel = cameras == cam
        name = cam.decode()
        if cut:
            rows["ccd_cuts"][sel] = compute_ccd_cuts(rows[sel], name, cut_options)
    groups = sorted({(c.decode(), b.decode()) for c, b in zip(cameras, bands, strict=True)})
    survey_paths: dict[tuple[str, str], Path] = {}
    annotated_paths: dict[tuple[str, str], Path] = {}
    for cam, band in groups:
        sel = (cameras == cam.encode()) & (bands == band.encode())
        part = rows[sel]
        annotated_paths[(cam, band)] = _write_table(layout.ccds_annotated(cam, band), part)
        survey_paths[(cam, band)] = _write_table(
            layout.survey_ccds(cam, band), survey_ccds_rows(part)
        )
    _remove_stale(layout, set(groups))
    counts = {name: int(np.count_nonzero(rows["ccd_cuts"] & bit)) for name, bit in CCD_CUTS.items()}
    n_kept = int(np.count_nonzero(rows["ccd_cuts"] == 0))
    log.info(
        "merged %d CCDs into %d camera-band tables; %d pass ccd_cuts",
        len(rows),
        len(groups),
        n_kept,
    )
    return MergedTables(
        survey_ccds=survey_paths,
        annotated=annotated_paths,
        n_rows=len(rows),
        n_kept=n_kept,
        cut_counts={k: v for k, v in counts.items() if v},
        dropped_expnums=dropped_expnums,
        dropped_images=dropped_images,
    )


def survey_ccds_rows(rows: np.ndarray) -> npt.NDArray[np.void]:
    """The survey-ccds columns of annotated (or any superset) rows."""
    out = np.zeros(len(rows), SURVEY_CCDS_DTYPE)
    for name in SURVEY_CCDS_DTYPE.names or ():
        out[name] = rows[name]
    return out


def read_survey_ccds(layout: ReleaseLayout, *, kept_only: bool = True) -> npt.NDArray[np.void]:
    """Every survey-ccds table of the release stacked (``SURVEY_CCDS_DTYPE``).

    These are the tables runbrick reads; ``kept_only`` keeps the rows with ``ccd_cuts == 0``.
    """
    import fitsio

    paths = layout.survey_ccds_tables()
    if not paths:
        raise SurveyError(
            f"{layout.root}: no survey-ccds*.fits.gz table: run the merge phase first"
        )
    parts = []
    for path in paths:
        try:
            table = fitsio.read(str(path), ext=1)
        except (OSError, ValueError) as err:
            raise InputFileError(f"{path}, HDU 1: cannot read CCD table ({err})") from err
        parts.append(conform(table, SURVEY_CCDS_DTYPE, f"{path}, HDU 1"))
    rows = np.concatenate(parts)
    if kept_only:
        rows = rows[rows["ccd_cuts"] == 0]
    return rows


def _write_table(path: Path, rows: np.ndarray) -> Path:
    """Write rows as HDU 1 (extname CCDS) atomically; ``.fits.gz`` names are gzip-compressed."""
    import fitsio

    with atomic_path(path) as tmp:
        fitsio.write(str(tmp), rows, extname="CCDS", clobber=True)
    return path


def _remove_stale(layout: ReleaseLayout, groups: set[tuple[str, str]]) -> None:
    """Remove camera-band tables this merge did not write, and the kd-tree of the old ones."""
    for cam in CAMERAS:
        for kind, maker in (
            ("survey-ccds", layout.survey_ccds),
            ("ccds-annotated", layout.ccds_annotated),
        ):
            for path in layout.root.glob(f"{kind}-{cam}-*.fits.gz"):
                band = path.name[len(f"{kind}-{cam}-") : -len(".fits.gz")]
                if (cam, band) not in groups and maker(cam, band) == path:
                    log.info("removing stale %s", path)
                    path.unlink()
    if layout.survey_ccds_kd.exists():
        log.info("removing %s: it indexed the previous CCD tables", layout.survey_ccds_kd)
        layout.survey_ccds_kd.unlink()
