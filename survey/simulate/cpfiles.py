"""CP-like files of an exposure: the primary header and the ooi, ood and oow planes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lsdr.survey.core.cameras import get_camera
from lsdr.survey.core.fileio import atomic_path
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.simulate.ccds import CcdImage
from lsdr.survey.simulate.exposures import ExposurePlan


def _sexagesimal(value: float, hours: bool) -> str:
    """``HH:MM:SS.ss`` (RA in hours) or ``±DD:MM:SS.s``."""
    v = value / 15.0 if hours else value
    sign = "-" if v < 0 else ""
    v = abs(v)
    d = int(v)
    m = int((v - d) * 60)
    s = (v - d - m / 60) * 3600
    return f"{sign}{d:02d}:{m:02d}:{s:05.2f}" if hours else f"{sign}{d:02d}:{m:02d}:{s:04.1f}"


def primary_header(plan: ExposurePlan) -> dict[str, str | float | int]:
    """The CP primary header of an exposure, with the keys legacypipe reads."""
    camera = get_camera(plan.camera)
    facts = camera.band(plan.band)
    date_obs = plan.utc.strftime("%Y-%m-%dT%H:%M:%S.000")
    hdr: dict[str, str | float | int] = {
        "DATE": plan.processing_date,
        "OBJECT": f"lsdr-sim-{plan.index}",
        "INSTRUME": camera.instrument,
        "TELESCOP": camera.telescope,
        "OBSTYPE": "object",
        "PROCTYPE": "InstCal",
        "PRODTYPE": "image",
        "DATE-OBS": date_obs,
        "MJD-OBS": round(plan.mjd_obs(), 8),
        "EXPTIME": plan.exptime,
        "FILTER": facts.filter_header,
        "AIRMASS": plan.airmass,
        "RA": _sexagesimal(plan.ra_bore, hours=True),
        "DEC": _sexagesimal(plan.dec_bore, hours=False),
        "HA": "+00:30:00",
        "PROPID": "2026A-0001",
        "OBSID": f"{camera.prefix}{plan.utc.strftime('%y%m%d%H%M%S')}",
        "DTACQNAM": plan.dtacqnam,
        "DTNSANAM": plan.cp_name("ooi"),
        "DTCALDAT": plan.night.isoformat(),
        "PLVER": plan.plver,
        "PLPROCID": f"{plan.expnum % 0xFFFFFFF:07x}",
        "WCSCAL": "Successful",
        "BUNIT": "counts/s",
        "SEEING": plan.seeing,
        "NEXTEND": len(plan.ccds),
        "LSDRSIM": True,
    }
    if camera.expnum_in_header:
        hdr["EXPNUM"] = plan.expnum
    if camera.name == "decam":
        hdr["GAIN"] = camera.gain
    return hdr


def write_planes(layout: ReleaseLayout, plan: ExposurePlan, ccds: list[CcdImage]) -> list[Path]:
    """Write the ooi/ood/oow files of an exposure (RICE-compressed, as the CP's ``.fits.fz``)."""
    import fitsio

    primary = primary_header(plan)
    # The CP's exposure sky level (image units, counts/s): legacypipe's Mosaic and 90Prime
    # readers take the source shot noise as |image - SKYADU| / EXPTIME.
    levels = [float(c.header["SKYADU1"]) for c in ccds]
    primary["SKYADU"] = round(sum(levels) / len(levels), 4) if levels else 0.0
    written = []
    for kind in ("ooi", "ood", "oow"):
        path = layout.image(plan.image_relpath(kind))
        with atomic_path(path) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as fits:
            fits.write(None, header=_cards(primary))
            for hdu, ccd in enumerate(ccds, start=1):
                header = _cards(ccd.header)
                dither = 1 + (plan.expnum * 7 + hdu * 131 + len(kind)) % 10_000
                if kind == "ood":
                    fits.write(ccd.dq, header=header, compress="RICE", extname=ccd.name)
                else:
                    data = ccd.image if kind == "ooi" else ccd.weight
                    # Images: steps of σ/4 as the CP's fpack (FZQVALUE 4).  Weights are
                    # smooth, so a relative step of 1e-4 (negative = absolute step).
                    # Weights keep exact zeros (SUBTRACTIVE_DITHER_2) for masked pixels.
                    qlevel = 4.0 if kind == "ooi" else -1e-4 * float(np.median(data))
                    fits.write(
                        data,
                        header=header,
                        compress="RICE",
                        qlevel=qlevel,
                        qmethod="SUBTRACTIVE_DITHER_1" if kind == "ooi" else "SUBTRACTIVE_DITHER_2",
                        dither_seed=dither,
                        extname=ccd.name,
                    )
        written.append(path)
    return written


def _cards(header: dict[str, str | float | int]) -> list[dict[str, object]]:
    """fitsio header records from a dict (keeps the order)."""
    return [{"name": k, "value": v} for k, v in header.items()]
