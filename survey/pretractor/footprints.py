"""CCD footprints of a survey directory: from its CCD tables, or from the images' headers.

The brick list of a region is made from the CCDs that exist; before the zeropoint phase has
written ``survey-ccds`` tables, their footprints come straight from the CP images' WCS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsdr.survey.core.bricks import FloatArray, ccd_corners_from_wcs
from lsdr.survey.core.errors import InputFileError, SurveyError
from lsdr.survey.core.layout import ReleaseLayout

CP_IMAGE_PATTERNS = ("*_ooi_*.fits.fz", "*_ooi_*.fits", "*_oki_*.fits.fz", "*_oki_*.fits")
"""CP image names (the ``ooi``/``oki`` science images; ``ood``/``oow`` are companions)."""


@dataclass(frozen=True)
class CcdFootprints:
    """Centres and pixel-edge corners of a set of CCDs, with where each came from."""

    image_filename: list[str]
    ccdname: list[str]
    ra: FloatArray
    dec: FloatArray
    corner_ra: FloatArray
    corner_dec: FloatArray

    def __len__(self) -> int:
        """Number of CCDs."""
        return len(self.ccdname)


def find_cp_images(images_dir: Path) -> list[Path]:
    """Every CP science image under ``images_dir``, sorted."""
    found: set[Path] = set()
    for pattern in CP_IMAGE_PATTERNS:
        found.update(images_dir.rglob(pattern))
    return sorted(found)


def footprints_from_images(images_dir: Path) -> CcdFootprints:
    """Read the TAN WCS of every CCD HDU of every CP image under ``images_dir``."""
    return footprints_of_images(find_cp_images(images_dir), images_dir)


def footprints_of_images(paths: list[Path], images_dir: Path) -> CcdFootprints:
    """Read the TAN WCS of every CCD HDU of these CP images (names relative to ``images_dir``)."""
    import fitsio

    names: list[str] = []
    ccds: list[str] = []
    wcs: list[list[float]] = []
    for path in paths:
        try:
            with fitsio.FITS(str(path)) as fits:
                for hdu in fits[1:]:
                    hdr = hdu.read_header()
                    if hdr.get("NAXIS", 0) != 2 and hdr.get("ZNAXIS", 0) != 2:
                        continue
                    info = hdu.get_info()
                    height, width = (int(v) for v in info["dims"])
                    wcs.append(
                        [float(hdr[k]) for k in ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2")]
                        + [float(hdr.get(k, 0.0)) for k in ("CD1_1", "CD1_2", "CD2_1", "CD2_2")]
                        + [float(width), float(height)]
                    )
                    names.append(str(path.relative_to(images_dir)))
                    ccds.append(str(hdr.get("EXTNAME", "")).strip())
        except (OSError, KeyError, ValueError) as err:
            raise InputFileError(f"{path}: cannot read CCD WCS ({err})") from err
    return _from_wcs(names, ccds, np.array(wcs, np.float64).reshape(-1, 10))


def footprints_from_table(path: Path) -> CcdFootprints:
    """CCD footprints from a survey-ccds table's WCS columns (rows with ccd_cuts == 0)."""
    import fitsio

    try:
        table = fitsio.read(str(path), ext=1)
    except OSError as err:
        raise InputFileError(f"{path}: cannot read CCD table ({err})") from err
    if "ccd_cuts" in table.dtype.names:
        table = table[table["ccd_cuts"] == 0]
    cols = ("crval1", "crval2", "crpix1", "crpix2", "cd1_1", "cd1_2", "cd2_1", "cd2_2")
    missing = [c for c in (*cols, "width", "height") if c not in table.dtype.names]
    if missing:
        raise InputFileError(f"{path}: CCD table lacks columns {missing}")
    wcs = np.stack([table[c].astype(np.float64) for c in (*cols, "width", "height")], axis=1)
    return _from_wcs(
        [str(v).strip() for v in table["image_filename"]],
        [str(v).strip() for v in table["ccdname"]],
        wcs,
    )


def _from_wcs(names: list[str], ccds: list[str], wcs: FloatArray) -> CcdFootprints:
    """Centres and pixel-edge corners from rows of (crval, crpix, cd, width, height)."""
    crval1, crval2, crpix1, crpix2, cd11, cd12, cd21, cd22, width, height = wcs.T
    # Pixel-edge corners, as legacypipe's ccds_touching_wcs uses: (0.5, 0.5) … (W+0.5, H+0.5).
    corner_ra, corner_dec = ccd_corners_from_wcs(
        crval1, crval2, crpix1 + 0.5, crpix2 + 0.5, cd11, cd12, cd21, cd22, width + 1, height + 1
    )
    # The centre is pixel ((W+1)/2, (H+1)/2): the (W, H) "corner" of a half-size CCD.
    centre_ra, centre_dec = ccd_corners_from_wcs(
        crval1, crval2, crpix1, crpix2, cd11, cd12, cd21, cd22, (width + 1) / 2, (height + 1) / 2
    )
    return CcdFootprints(
        image_filename=names,
        ccdname=ccds,
        ra=centre_ra[:, 2] if len(names) else np.zeros(0),
        dec=centre_dec[:, 2] if len(names) else np.zeros(0),
        corner_ra=corner_ra if len(names) else np.zeros((0, 4)),
        corner_dec=corner_dec if len(names) else np.zeros((0, 4)),
    )


def concat_footprints(parts: list[CcdFootprints]) -> CcdFootprints:
    """One footprint set from several (e.g. one per camera's CCD table)."""
    return CcdFootprints(
        image_filename=[n for p in parts for n in p.image_filename],
        ccdname=[n for p in parts for n in p.ccdname],
        ra=np.concatenate([p.ra for p in parts]),
        dec=np.concatenate([p.dec for p in parts]),
        corner_ra=np.concatenate([p.corner_ra for p in parts]).reshape(-1, 4),
        corner_dec=np.concatenate([p.corner_dec for p in parts]).reshape(-1, 4),
    )


def survey_footprints(layout: ReleaseLayout) -> CcdFootprints:
    """The CCDs of a release: its ``survey-ccds-*.fits.gz`` tables if any, else its images."""
    tables = layout.survey_ccds_tables()
    if tables:
        found = concat_footprints([footprints_from_table(t) for t in tables])
    elif layout.images_dir.is_dir():
        found = footprints_from_images(layout.images_dir)
    else:
        raise SurveyError(
            f"{layout.root}: no survey-ccds-*.fits.gz table and no images/ directory; "
            "run `lsdr simulate --out DIR` first or point --survey-dir at a release"
        )
    if len(found) == 0:
        raise SurveyError(f"{layout.root}: no CCDs found in its CCD tables or images/")
    return found
