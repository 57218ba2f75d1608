"""Stage ``writecat``: fitted sources → the DR tractor catalogue, the maskbits image, checksums.

Per-source values that live on the brick grid (``nobs``, ``psfdepth``, ``galdepth``,
``psfsize``) are read from the coadd files the ``coadds`` stage wrote, at the source's pixel,
as legacypipe reads its coadd maps; ``maskbits`` come from the maskbits image written here
(NPRIMARY outside the brick's unique area, BRIGHT/MEDIUM from the reference stars, BAILOUT where
``--bail-out`` skipped blobs).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey import tractorschema as ts
from lsdr.survey.layout import ReleaseLayout
from lsdr.survey.runbrick.options import RunbrickOptions
from lsdr.survey.runbrick.types import BrickGeometry, Source
from lsdr.survey.runbrick.writecat import finalize_catalog, write_catalog

log = logging.getLogger("lsdr.survey.runbrick")

FLAVOUR = "dr10"
"""The catalogue schema lite writes (DR10 columns for the run's bands)."""


def maskbits_image(
    geom: BrickGeometry,
    bits: dict[str, int],
    refmap: npt.NDArray[np.integer[Any]] | None,
    bailout_mask: npt.NDArray[np.bool_] | None,
) -> npt.NDArray[np.int32]:
    """The brick's maskbits map: NPRIMARY, BRIGHT, MEDIUM, BAILOUT."""
    out = np.zeros((geom.height, geom.width), np.int32)
    ys, xs = np.mgrid[0 : geom.height, 0 : geom.width]
    ra, dec = geom.wcs().pixel_to_radec(xs.ravel() + 1.0, ys.ravel() + 1.0)
    from lsdr.survey.runbrick.writecat import brick_primary

    primary = brick_primary(ra, dec, geom).reshape(out.shape)
    out[~primary] |= bits["NPRIMARY"]
    if refmap is not None:
        out |= np.asarray(refmap, np.int32) & (bits["BRIGHT"] | bits["MEDIUM"])
    if bailout_mask is not None:
        out[np.asarray(bailout_mask, bool)] |= bits["BAILOUT"]
    return out


def write_maskbits(path: Path, mask: npt.NDArray[np.int32], bits: dict[str, int]) -> Path:
    """``-maskbits.fits.fz`` (HDU MASKBITS, HCOMPRESS as legacypipe), bit names in MBIT_<n>."""
    import fitsio

    from lsdr.survey.fileio import atomic_path

    header = [
        {"name": f"MBIT_{value.bit_length() - 1}", "value": name, "comment": "maskbits bit"}
        for name, value in bits.items()
    ]
    with atomic_path(path) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as out:
        out.write(mask, header=header, extname="MASKBITS", compress="HCOMPRESS")
    return path


def _map_values(path: Path, x: npt.NDArray[np.int64], y: npt.NDArray[np.int64]) -> Any:
    """Values of a coadd map at pixels (x, y); None when the map was not written."""
    import fitsio

    if not path.exists():
        return None
    data = fitsio.read(str(path), ext=1)
    return data[np.clip(y, 0, data.shape[0] - 1), np.clip(x, 0, data.shape[1] - 1)]


def sources_to_catalog(
    sources: Sequence[Source], bands: Sequence[str], layout: ReleaseLayout, geom: BrickGeometry
) -> npt.NDArray[np.void]:
    """The catalogue rows of the fitted sources (derived columns are filled by finalize)."""
    cat = ts.empty_catalog(len(sources), bands, release_flavour=FLAVOUR)
    for i, s in enumerate(sources):
        row = cat[i]
        row["ra"], row["dec"], row["type"] = s.ra, s.dec, s.type
        row["ra_ivar"], row["dec_ivar"] = s.ra_ivar, s.dec_ivar
        row["bx"], row["by"] = s.bx, s.by
        row["shape_r"], row["shape_r_ivar"] = s.shape_r, s.shape_r_ivar
        row["shape_e1"], row["shape_e2"] = s.shape_e1, s.shape_e2
        row["sersic"] = s.sersic
        row["ref_cat"] = s.ref_cat
        row["ref_id"] = max(int(s.ref_id), 0)  # legacypipe writes 0 without a reference
        row["dchisq"] = np.asarray(s.dchisq, np.float32)[:5]
        for b in bands:
            row[f"flux_{b}"] = s.flux.get(b, 0.0)
            row[f"flux_ivar_{b}"] = s.flux_ivar.get(b, 0.0)
            row[f"rchisq_{b}"] = s.rchisq.get(b, 0.0)
            row[f"fracflux_{b}"] = s.fracflux.get(b, 0.0)
            row[f"fracmasked_{b}"] = s.fracmasked.get(b, 0.0)
            row[f"fracin_{b}"] = s.fracin.get(b, 1.0)
    if len(sources):
        x = np.round(cat["bx"]).astype(np.int64)
        y = np.round(cat["by"]).astype(np.int64)
        for b in bands:
            for column, kind in (
                (f"nobs_{b}", "nexp"),
                (f"psfdepth_{b}", "depth"),
                (f"galdepth_{b}", "galdepth"),
                (f"psfsize_{b}", "psfsize"),
            ):
                values = _map_values(layout.coadd(geom.brickname, kind, b), x, y)
                if values is not None:
                    cat[column] = values
    return cat


def stage_writecat(
    *,
    layout: ReleaseLayout,
    geom: BrickGeometry,
    bands: Sequence[str],
    sources: Sequence[Source],
    options: RunbrickOptions,
    refmap: npt.NDArray[np.integer[Any]] | None = None,
    bailout_mask: npt.NDArray[np.bool_] | None = None,
    coadd_products: Sequence[Path] = (),
) -> dict[str, Any]:
    """Stage ``writecat``: maskbits image, tractor and tractor-i catalogues, checksum file."""
    bits = ts.maskbits(bands, FLAVOUR)
    mask = maskbits_image(geom, bits, refmap, bailout_mask)
    mask_path = write_maskbits(layout.coadd_maskbits(geom.brickname), mask, bits)
    cat = sources_to_catalog(sources, bands, layout, geom)
    regular = np.array([bool(s.extra.get("regular", True)) for s in sources], bool)
    cat = finalize_catalog(
        cat,
        geom,
        bands=bands,
        release=options.release,
        maskbits_map=mask,
        regular=regular if len(sources) else None,
    )
    paths = write_catalog(layout, geom, cat, bands=bands, release=options.release)
    log.info("%s: wrote %d sources to %s", geom.brickname, len(cat), paths.tractor)
    return {
        "catalog_products": [mask_path, paths.tractor, paths.tractor_i, paths.checksums],
        "n_sources": len(cat),
    }
