"""The brick's files in ``metrics/<bri>/`` that the lite engine can write as legacypipe does.

- ``reference-<brick>.fits`` (HDU ``REFERENCES``): the reference stars of the ``refs`` stage
  with legacypipe's column names (``ra``, ``dec``, ``ref_cat``, ``ref_id``, ``mag``, the
  ``is*`` flags, ``in_bounds``, ``mask_mag``, ``radius`` in degrees, ``radius_pix``, ``ibx``,
  ``iby``); not written when there is no reference star, as legacypipe.
- ``blobs-<brick>.fits.gz`` (HDU ``BLOB-MAP``): the blob map (int32, −1 outside blobs) with the
  brick's WCS and ``IMTYPE = 'blobmap'``, gzipped with a zero timestamp so it is reproducible.

``sources-<brick>.fits`` and ``all-models-<brick>.fits`` are not written: the lite engine keeps
neither the detections after fitting nor every model it tried for a source.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.fileio import atomic_path
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.runbrick.types import BrickGeometry

REFERENCE_COLUMNS: list[tuple[str, str, str]] = [
    ("ra", "f8", "deg"),
    ("dec", "f8", "deg"),
    ("ref_cat", "S2", ""),
    ("ref_id", "i8", ""),
    ("mag", "f4", "mag"),
    ("istycho", "?", ""),
    ("isgaia", "?", ""),
    ("islargegalaxy", "?", ""),
    ("iscluster", "?", ""),
    ("isbright", "?", ""),
    ("ismedium", "?", ""),
    ("in_bounds", "?", ""),
    ("mask_mag", "f4", "mag"),
    ("radius", "f4", "deg"),
    ("radius_pix", "i4", "pix"),
    ("ibx", "i4", "pix"),
    ("iby", "i4", "pix"),
]
"""Columns, dtypes and units of ``reference-<brick>.fits`` (a subset of legacypipe's, in order)."""


def brick_header(geom: BrickGeometry, imtype: str | None = None) -> list[dict[str, Any]]:
    """Header records naming the brick and its grid WCS (legacypipe's ``copy_header_with_wcs``)."""
    recs: list[dict[str, Any]] = [
        {"name": "BRICKNAM", "value": geom.brickname, "comment": "LegacySurveys brick name"},
        {"name": "BRICKID", "value": geom.brickid, "comment": "LegacySurveys brick id"},
    ]
    recs += [{"name": k, "value": v} for k, v in geom.wcs().header_cards().items()]
    recs.append({"name": "EQUINOX", "value": 2000.0, "comment": "WCS epoch"})
    if imtype is not None:
        recs.append({"name": "IMTYPE", "value": imtype, "comment": "LegacySurveys image type"})
    return recs


def reference_table(refs: npt.NDArray[np.void], geom: BrickGeometry) -> npt.NDArray[np.void]:
    """The rows of ``reference-<brick>.fits`` from the refs stage's table."""
    out = np.zeros(len(refs), [(n, t) for n, t, _ in REFERENCE_COLUMNS])
    cat = np.char.strip(np.asarray(refs["ref_cat"]).astype("S2"))
    for name in ("ra", "dec", "ref_id", "mag", "radius", "ibx", "iby", "in_bounds"):
        out[name] = refs[name]
    names = refs.dtype.names or ()
    for name in ("isbright", "ismedium", "istycho", "iscluster"):
        if name in names:
            out[name] = refs[name]
    out["ref_cat"] = cat
    out["istycho"] |= cat == b"T2"
    out["isgaia"] = (cat == b"G2") | (cat == b"GE")
    out["islargegalaxy"] = cat == b"L3"
    out["iscluster"] |= cat == b"CL"
    out["mask_mag"] = refs["mask_mag"] if "mask_mag" in names else refs["mag"]
    out["radius_pix"] = np.ceil(np.asarray(refs["radius"], np.float64) * 3600.0 / geom.pixscale)
    return out


def write_reference(
    layout: ReleaseLayout, geom: BrickGeometry, refs: npt.NDArray[np.void] | None
) -> Path | None:
    """Write ``metrics/<bri>/reference-<brick>.fits``; None when there are no reference stars."""
    import fitsio

    if refs is None or len(refs) == 0:
        return None
    path = layout.metrics(geom.brickname, "reference")
    units = [u for _, _, u in REFERENCE_COLUMNS]
    with atomic_path(path) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as out:
        out.write(None, header=brick_header(geom))
        out.write(reference_table(refs, geom), extname="REFERENCES", units=units)
    return path


def write_blobmap(
    layout: ReleaseLayout, geom: BrickGeometry, blobmap: npt.NDArray[np.integer[Any]] | None
) -> Path | None:
    """Write ``metrics/<bri>/blobs-<brick>.fits.gz``; None without a blob map."""
    import fitsio

    if blobmap is None:
        return None
    path = layout.metrics(geom.brickname, "blobs")
    data = np.asarray(blobmap, np.int32)
    with atomic_path(path) as tmp:
        plain = tmp.with_name(tmp.name[: -len(".gz")])
        try:
            with fitsio.FITS(str(plain), "rw", clobber=True) as out:
                out.write(data, header=brick_header(geom, "blobmap"), extname="BLOB-MAP")
            tmp.write_bytes(gzip.compress(plain.read_bytes(), compresslevel=6, mtime=0))
        finally:
            plain.unlink(missing_ok=True)
    return path


def write_metrics(
    layout: ReleaseLayout,
    geom: BrickGeometry,
    refs: npt.NDArray[np.void] | None,
    blobmap: npt.NDArray[np.integer[Any]] | None,
) -> list[Path]:
    """Write the brick's metrics files that apply; returns the paths written."""
    written = [write_reference(layout, geom, refs), write_blobmap(layout, geom, blobmap)]
    return [p for p in written if p is not None]
