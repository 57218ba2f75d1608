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
