"""Finding one CCD's row in a calib table (per-CCD or merged per exposure): PsfEx and sky alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lsdr.survey.core.errors import InputFileError


def text(value: object) -> str:
    """A FITS string cell as stripped text (fitsio gives str or bytes)."""
    if isinstance(value, bytes):
        return value.decode().strip()
    return str(value).strip()


def read_ccd_row(path: Path, expnum: int, ccdname: str, what: str) -> np.void:
    """The single row of exposure ``expnum``, CCD ``ccdname`` of the calib table at ``path``.

    ``what`` names the table in errors ("PsfEx table", "spline-sky table").
    """
    import fitsio

    try:
        rows = np.asarray(fitsio.read(str(path), ext=1))
    except OSError as err:
        raise InputFileError(f"{path}: cannot read {what} ({err})") from err
    match = [
        i
        for i, r in enumerate(rows)
        if int(r["expnum"]) == int(expnum) and text(r["ccdname"]) == ccdname.strip()
    ]
    if len(match) != 1:
        raise InputFileError(
            f"{path}: {len(match)} rows for exposure {expnum} CCD {ccdname} (expected 1)"
        )
    row: np.void = rows[match[0]]
    return row
