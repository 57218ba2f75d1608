"""The CCDs (HDUs) of a CP image, their image, mask and inverse-variance planes, and WCS."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.fitsread import FITS_BLOCK
from lsdr.survey.core.layout import ReleaseLayout


@dataclass(frozen=True)
class CcdHdu:
    """One CCD of an image: its HDU number and name."""

    hdu: int
    ccdname: str


def list_ccds(path: Path) -> list[CcdHdu]:
    """The image HDUs of a CP file (extensions with data; the primary if it is the image).

    A file whose size is not a whole number of FITS blocks is truncated.
    """
    import fitsio

    try:
        with fitsio.FITS(str(path)) as fits:
            nhdu = len(fits)
            nextend = fits[0].read_header().get("NEXTEND")
            ccds = []
            for i in range(1, nhdu):
                if fits[i].get_exttype() != "IMAGE_HDU" and not fits[i].is_compressed():
                    continue
                name = fits[i].get_extname().strip().upper() or f"HDU{i}"
                ccds.append(CcdHdu(i, name))
            if not ccds and fits[0].has_data():
                ccds.append(CcdHdu(0, "HDU0"))
    except OSError as err:
        raise InputFileError(f"{path}: cannot open ({err}); re-transfer the file") from err
    size = path.stat().st_size
    if size % FITS_BLOCK:
        last = ccds[-1] if ccds else CcdHdu(nhdu - 1, f"HDU{nhdu - 1}")
        raise InputFileError(
            f"{path} HDU {last.hdu} ({last.ccdname}): truncated data (file size {size} is not a "
            f"whole number of {FITS_BLOCK}-byte FITS blocks; primary NEXTEND = {nextend}, "
            f"{nhdu - 1} extensions found); re-transfer the file"
        )
    if not ccds:
        raise InputFileError(f"{path}: no image HDU")
    return ccds


@dataclass
class CcdPlanes:
    """Image (e-/s), data-quality mask and inverse variance of one CCD, with the image header."""

    image: npt.NDArray[np.float32]
    dq: npt.NDArray[np.int32]
    ivar: npt.NDArray[np.float32]
    header: dict[str, Any]


def _read_hdu(path: Path, ccd: CcdHdu, header: bool = False) -> tuple[np.ndarray, Any]:
    import fitsio

    try:
        with fitsio.FITS(str(path)) as fits:
            if ccd.hdu >= len(fits):
                raise OSError("extension missing")
            hdu = fits[ccd.hdu]
            data = hdu.read()
            hdr = hdu.read_header() if header else None
    except OSError as err:
        reason = " ".join(str(err).split())[:160]
        raise InputFileError(
            f"{path} HDU {ccd.hdu} ({ccd.ccdname}): truncated or corrupt data ({reason}); "
            "re-transfer the file"
        ) from err
    if data is None or np.ndim(data) != 2:
        raise InputFileError(f"{path} HDU {ccd.hdu} ({ccd.ccdname}): no 2-d image data")
    return data, hdr


def read_planes(layout: ReleaseLayout, image: str, ccd: CcdHdu) -> CcdPlanes:
    """Read ooi, ood and oow of one CCD; shapes must agree."""
    ooi = layout.image(image)
    ood = layout.image_companion(image, "ood")
    oow = layout.image_companion(image, "oow")
    img, hdr = _read_hdu(ooi, ccd, header=True)
    dq, _ = _read_hdu(ood, ccd)
    iv, _ = _read_hdu(oow, ccd)
    for path, arr in ((ood, dq), (oow, iv)):
        if arr.shape != img.shape:
            raise InputFileError(
                f"{path} HDU {ccd.hdu} ({ccd.ccdname}): shape {arr.shape} differs from the "
                f"image's {img.shape}"
            )
    skip = {"XTENSION", "BITPIX", "PCOUNT", "GCOUNT", "TFIELDS", "COMMENT", "HISTORY", ""}
    header = {
        k: hdr[k]
        for k in [r["name"] for r in hdr.records()]
        if k
        and k not in skip
        and not k.startswith(("ZTILE", "ZNAME", "ZVAL", "TTYPE", "TFORM"))
        and k not in ("ZIMAGE", "ZBITPIX", "ZNAXIS", "ZNAXIS1", "ZNAXIS2", "ZCMPTYPE", "ZQUANTIZ")
        and not k.startswith("NAXIS")
    }
    return CcdPlanes(
        image=np.asarray(img, np.float32),
        dq=np.asarray(dq, np.int32),
        ivar=np.asarray(iv, np.float32),
        header=header,
    )


def ccd_wcs(header: dict[str, Any], shape: tuple[int, int]) -> Any:
    """The CCD's WCS (TAN or TPV) as an astropy WCS."""
    import warnings

    from astropy.io import fits as afits
    from astropy.wcs import WCS, FITSFixedWarning

    hdr = afits.Header()
    hdr["NAXIS"] = 2
    hdr["NAXIS1"] = shape[1]
    hdr["NAXIS2"] = shape[0]
    for key, value in header.items():
        if key.startswith(("CTYPE", "CRVAL", "CRPIX", "CD1_", "CD2_", "PV", "CUNIT", "RADESYS",
                           "EQUINOX", "LONPOLE", "LATPOLE")):  # fmt: skip
            hdr[key] = value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(hdr)
