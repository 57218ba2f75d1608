"""Reading FITS images of a release with errors that name the file (truncated, missing, empty)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy.typing as npt

from lsdr.survey.core.errors import InputFileError


def fits_failure(path: Path, err: Exception) -> InputFileError:
    """The error for a FITS file fitsio could not read: the file and the first error line."""
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return InputFileError(f"{path}: unreadable or truncated FITS file: {first}")


FITS_BLOCK = 2880
"""Bytes in a FITS block: every FITS file's size is a multiple."""


def fits_problem(path: Path) -> str | None:
    """Why a FITS file cannot be read in full (truncated, corrupt), or None when it can.

    Cheap: the headers, and each HDU's data end against the file's size; no pixel is read.
    """
    import fitsio

    try:
        size = path.stat().st_size
        with fitsio.FITS(str(path)) as fits:
            for hdu in fits:
                hdu.read_header()
                data_end = int(hdu.get_offsets()["data_end"])
                if data_end > size:
                    return (
                        f"truncated: HDU {hdu.get_extnum()} ends at byte {data_end}, "
                        f"the file has {size}"
                    )
    except (OSError, ValueError, RuntimeError) as err:
        return f"unreadable: {(str(err).strip().splitlines() or [type(err).__name__])[0]}"
    if size % FITS_BLOCK:
        return f"truncated: {size} bytes is not a whole number of {FITS_BLOCK}-byte FITS blocks"
    return None


def image_hdu_index(fits: Any, path: Path) -> int:
    """Index of the first image HDU with data (the tile-compressed one of a ``.fits.fz``)."""
    for i, hdu in enumerate(fits):
        if hdu.get_exttype() == "IMAGE_HDU" and hdu.has_data():
            return i
    raise InputFileError(f"{path}: no image HDU with data")


def read_image(path: Path) -> tuple[npt.NDArray[Any], Any]:
    """The first image HDU with data and its header; ``InputFileError`` naming the file."""
    import fitsio

    if not path.is_file():
        raise InputFileError(f"{path}: file not found")
    try:
        with fitsio.FITS(str(path)) as fits:
            i = image_hdu_index(fits, path)
            return fits[i].read(), fits[i].read_header()
    except InputFileError:
        raise
    except (OSError, ValueError, RuntimeError) as err:
        raise fits_failure(path, err) from err


def catalogue_hdu(fits: Any, path: Path, required: tuple[str, ...]) -> tuple[Any, dict[str, str]]:
    """A tractor catalogue's table HDU (``CATALOG``, else HDU 1) and its columns by lower case.

    ``InputFileError`` naming the file when a required column is missing.
    """
    hdu = fits["CATALOG"] if "CATALOG" in fits else fits[1]
    have = {c.lower(): c for c in hdu.get_colnames()}
    for need in required:
        if need not in have:
            raise InputFileError(f"{path}: tractor catalogue has no {need} column")
    return hdu, have
