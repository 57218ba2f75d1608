"""The exposure of a CP image: its primary header read as legacypipe reads it."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsdr.survey.core.cameras import CAMERAS, camera_of_image
from lsdr.survey.core.errors import CameraError, InputFileError


@dataclass(frozen=True)
class ExposureInfo:
    """Primary-header facts of one CP exposure, read as legacypipe reads them."""

    camera: str
    expnum: int
    band: str
    exptime: float
    mjd_obs: float
    airmass: float
    ra_bore: float
    dec_bore: float
    plver: str
    plprocid: str
    procdate: str
    propid: str
    object: str
    synthetic: bool
    header: dict[str, Any] = field(default_factory=dict)


def _sexagesimal(text: object, hours: bool) -> float:
    """Degrees from 'HH:MM:SS.s' (hours) or '±DD:MM:SS'; NaN when unparseable."""
    if isinstance(text, int | float):
        return float(text) * (15.0 if hours else 1.0)
    try:
        parts = str(text).strip().split(":")
        sign = -1.0 if parts[0].strip().startswith("-") else 1.0
        d = abs(float(parts[0])) + float(parts[1]) / 60 + float(parts[2]) / 3600
    except (IndexError, ValueError):
        return math.nan
    return sign * d * (15.0 if hours else 1.0)


def finite_float(value: object, default: float = math.nan) -> float:
    """``value`` as a finite float; ``default`` when it is not a number or not finite."""
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default


def _camera(path: Path, header: dict[str, Any]) -> str:
    try:
        return camera_of_image(path.name).name
    except CameraError:
        name = str(header.get("INSTRUME", "")).strip().lower()
        name = {"mosaic3": "mosaic"}.get(name, name)
        if name in CAMERAS:
            return name
        raise


def _expnum(camera: str, header: dict[str, Any], path: Path) -> int:
    value = header.get("EXPNUM")
    if camera != "90prime" and value not in (None, ""):
        return int(value)
    if camera == "90prime" and header.get("DTACQNAM"):
        base = Path(str(header["DTACQNAM"]).strip()).name.replace(".fits", "").replace(".fz", "")
        digits = re.sub(r"([a-z]+|\.+)", "", base)
        if digits.isdigit():
            return int(digits)
    obsid = str(header.get("OBSID", "")).strip()
    if "." in obsid:
        stamp = obsid.split(".")[1].replace("T", "")
        if stamp[2:].isdigit():
            return int(stamp[2:])
    raise InputFileError(f"{path}: no exposure number (EXPNUM, DTACQNAM or OBSID) in HDU 0")


def _band(camera: str, header: dict[str, Any], path: Path) -> str:
    words = str(header.get("FILTER", "")).split()
    if not words:
        raise InputFileError(f"{path}: no FILTER in HDU 0")
    return {"zd": "z", "bokr": "r"}.get(words[0], words[0])


def read_exposure_info(path: Path) -> ExposureInfo:
    """Camera, exposure number, band, exposure time, … from an image's primary header."""
    import fitsio

    try:
        hdr = fitsio.read_header(str(path), ext=0)
    except OSError as err:
        raise InputFileError(f"{path} HDU 0: cannot read primary header ({err})") from err
    header = {
        r["name"]: r["value"] for r in hdr.records() if r["name"] not in ("COMMENT", "HISTORY", "")
    }
    camera = _camera(path, header)
    exptime = finite_float(header.get("EXPTIME"), 0.0)
    if exptime <= 0:
        raise InputFileError(f"{path} HDU 0: EXPTIME {header.get('EXPTIME')!r} is not positive")
    return ExposureInfo(
        camera=camera,
        expnum=_expnum(camera, header, path),
        band=_band(camera, header, path),
        exptime=exptime,
        mjd_obs=finite_float(header.get("MJD-OBS"), 0.0),
        airmass=finite_float(header.get("AIRMASS"), 0.0),
        ra_bore=_sexagesimal(header.get("RA"), hours=True),
        dec_bore=_sexagesimal(header.get("DEC"), hours=False),
        plver=str(header.get("PLVER", "V0.0")).strip(),
        plprocid=str(header.get("PLPROCID", "xxx")).strip(),
        procdate=str(header.get("DATE", "xxx")).strip(),
        propid=str(header.get("PROPID", "")).strip(),
        object=str(header.get("OBJECT", "")).strip(),
        synthetic=bool(header.get("LSDRSIM", False)),
        header=header,
    )
