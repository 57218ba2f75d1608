"""Stage ``coadds``: per-band stacks on the brick grid and the products legacypipe writes then.

Per band, each tim is resampled (``resample.py``) and accumulated at once, so only one band's
maps are in memory: ``image`` = Σ invvar·image / Σ invvar, ``invvar`` = Σ invvar, ``nexp`` the
number of exposures with data, ``depth`` = Σ psfnorm²·invvar and ``galdepth`` = Σ galnorm²·invvar
(the point-source and 0.45″-galaxy detection inverse variance, 1/nanomaggy², CCD-pixel invvar as
legacypipe), ``psfsize`` the FWHM (arcsec) of the 1/sig1²-weighted mean effective PSF area
(legacypipe's ``psfsizemap``), and with per-tim model images ``model`` and ``chi2``.  Files,
extension names (``<TYPE>_<band>``), header keys (IMTYPE, PRODTYPE, MAGZERO, BUNIT) and tile
compression follow legacypipe (``coadds.py`` ``write_coadd_images``, ``survey.py``
``get_compression_kwargs``); ``-ccds.fits`` holds the survey-ccds columns of the used CCDs plus
the cut-out and brick bounds; ``-image.jpg`` is an asinh-stretched g,r,z → B,G,R picture.
Every file is written atomically.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.fileio import atomic_path
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.runbrick.depthtable import DepthTable
from lsdr.survey.runbrick.primary import unique_pixels
from lsdr.survey.runbrick.resample import resample_tim
from lsdr.survey.runbrick.types import BrickGeometry, Tim

log = logging.getLogger(__name__)

ENGINE = "lsdr-lite"

PRODTYPE = {
    "image": "image",
    "invvar": "wtmap",
    "nexp": "expmap",
    "depth": "psfdepth",
    "galdepth": "galdepth",
    "psfsize": "psfsize",
    "model": "model",
    "chi2": "chi2",
}
"""legacypipe's NOIRLab product type of each coadd image."""

COMPRESSION: dict[str, dict[str, Any]] = {
    "image": {"compress": "RICE", "qmethod": "SUBTRACTIVE_DITHER_2", "qlevel": -1e-4},
    "model": {"compress": "RICE", "qmethod": "SUBTRACTIVE_DITHER_2", "qlevel": -1e-4},
    "chi2": {"compress": "RICE", "qmethod": "NO_DITHER", "qlevel": -0.1},
    "invvar": {"compress": "RICE", "qmethod": "NO_DITHER", "qlevel": 16},
    "depth": {"compress": "GZIP", "qmethod": "NO_DITHER", "qlevel": 0.0},
    "galdepth": {"compress": "GZIP", "qmethod": "NO_DITHER", "qlevel": 0.0},
    "psfsize": {"compress": "GZIP", "qmethod": "NO_DITHER", "qlevel": 0.0},
    "nexp": {"compress": "HCOMPRESS"},
}
"""Tile compression per product (``get_compression_kwargs``; dither seed 'checksum')."""

RGB_SCALES = {"g": (2, 6.0), "r": (1, 3.4), "i": (0, 3.0), "z": (0, 2.2)}
"""Band → (RGB channel, scale) for the JPEG (legacypipe's grz defaults)."""


@dataclass
class BandCoadd:
    """The stacked maps of one band (float32 except ``nexp``)."""

    band: str
    image: npt.NDArray[np.float32]
    invvar: npt.NDArray[np.float32]
    nexp: npt.NDArray[np.int16]
    depth: npt.NDArray[np.float32]
    galdepth: npt.NDArray[np.float32]
    psfsize: npt.NDArray[np.float32]
    model: npt.NDArray[np.float32] | None = None
    chi2: npt.NDArray[np.float32] | None = None
    mjds: list[float] = field(default_factory=list)

    def maps(self) -> dict[str, npt.NDArray[Any]]:
        """The products to write, in legacypipe's order."""
        out: dict[str, npt.NDArray[Any]] = {
            "image": self.image,
            "invvar": self.invvar,
            "nexp": self.nexp,
            "depth": self.depth,
            "galdepth": self.galdepth,
            "psfsize": self.psfsize,
        }
        if self.model is not None and self.chi2 is not None:
            out["model"] = self.model
            out["chi2"] = self.chi2
        return out


@dataclass(frozen=True)
class TimFootprint:
    """Where a tim landed: its cut-out (CCD pixels) and brick-grid bounds (inclusive, 0-based)."""

    ccd_x0: int
    ccd_x1: int
    ccd_y0: int
    ccd_y1: int
    brick_x0: int
    brick_x1: int
    brick_y0: int
    brick_y1: int


def coadd_band(
    tims: Sequence[Tim],
    geom: BrickGeometry,
    band: str,
    models: Sequence[npt.NDArray[np.float32] | None] | None = None,
    footprints: dict[int, TimFootprint] | None = None,
) -> BandCoadd | None:
    """Stack the tims of one band on the brick grid (None when the band has no tim)."""
    shape = (geom.height, geom.width)
    with_models = models is not None and any(m is not None for m in models)
    cow = np.zeros(shape, np.float32)
    cowimg = np.zeros(shape, np.float32)
    nexp = np.zeros(shape, np.int16)
    psfdet = np.zeros(shape, np.float32)
    galdet = np.zeros(shape, np.float32)
    size_num = np.zeros(shape, np.float32)
    flatcow = np.zeros(shape, np.float32)
    comod = np.zeros(shape, np.float32) if with_models else None
    chi2 = np.zeros(shape, np.float32) if with_models else None
    mjds = []
    for i, tim in enumerate(tims):
        if tim.band != band:
            continue
        model = models[i] if models is not None else None
        res = resample_tim(tim, geom, i, () if model is None else (model,))
        if res is None:
            continue
        mjds.append(tim.mjd_obs)
        sl = res.slices
        iv = res.invvar
        has = iv > 0
        cow[sl] += iv
        cowimg[sl] += iv * res.image
        nexp[sl] += has.astype(np.int16)
        # legacypipe: flat weight 1/sig1² over the whole footprint (detection depth and
        # N_eff in arcsec²), not the per-pixel invvar, which holds the sources' shot noise.
        iv1 = np.float32(1.0 / tim.sig1**2) if tim.sig1 > 0 else np.float32(0.0)
        narcsec = (1.0 / tim.psfnorm**2) * tim.wcs.pixscale**2 if tim.psfnorm > 0 else 0.0
        cover = has.astype(np.float32)
        psfdet[sl] += cover * (np.float32(tim.psfnorm**2) * iv1)
        galdet[sl] += cover * (np.float32(tim.galnorm**2) * iv1)
        if narcsec > 0:
            size_num[sl] += cover * iv1 / np.float32(narcsec)
            flatcow[sl] += cover * iv1
        if comod is not None and chi2 is not None and res.extras:
            comod[sl] += iv * res.extras[0]
            chi2[sl] += iv * (res.image - res.extras[0]) ** 2
        if footprints is not None:
            nz_y = np.nonzero(has.any(axis=1))[0]
            nz_x = np.nonzero(has.any(axis=0))[0]
            if len(nz_y):
                h, w = tim.shape
                footprints[i] = TimFootprint(
                    tim.x0,
                    tim.x0 + w - 1,
                    tim.y0,
                    tim.y0 + h - 1,
                    res.x0 + int(nz_x[0]),
                    res.x0 + int(nz_x[-1]),
                    res.y0 + int(nz_y[0]),
                    res.y0 + int(nz_y[-1]),
                )
        del res, iv, has, cover
    if not mjds:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        image = np.where(cow > 0, cowimg / cow, np.float32(0.0)).astype(np.float32)
        del cowimg
        mean = size_num / np.maximum(flatcow, np.float32(1e-30))
        tosigma = 1.0 / (2.0 * math.sqrt(math.pi))
        tofwhm = 2.0 * math.sqrt(2.0 * math.log(2.0))
        psfsize = np.where(flatcow > 0, tosigma * tofwhm / np.sqrt(mean), 0.0).astype(np.float32)
        model = None
        if comod is not None:
            model = np.where(cow > 0, comod / cow, np.float32(0.0)).astype(np.float32)
    return BandCoadd(
        band=band,
        image=image,
        invvar=cow,
        nexp=nexp,
        depth=psfdet,
        galdepth=galdet,
        psfsize=psfsize,
        model=model,
        chi2=chi2,
        mjds=mjds,
    )


def coadd_header(geom: BrickGeometry, co: BandCoadd, kind: str) -> list[dict[str, Any]]:
    """Header records of one coadd product (brick WCS, stack dates, legacypipe's type keys)."""
    recs: list[dict[str, Any]] = [
        {"name": "LEGPIPEV", "value": ENGINE, "comment": "lsdr lite runbrick"},
        {"name": "BRICKNAM", "value": geom.brickname, "comment": "LegacySurveys brick name"},
        {"name": "BRICKID", "value": geom.brickid, "comment": "LegacySurveys brick id"},
        {"name": "RAMIN", "value": geom.ra1, "comment": "Brick RA min (deg)"},
        {"name": "RAMAX", "value": geom.ra2, "comment": "Brick RA max (deg)"},
        {"name": "DECMIN", "value": geom.dec1, "comment": "Brick Dec min (deg)"},
        {"name": "DECMAX", "value": geom.dec2, "comment": "Brick Dec max (deg)"},
    ]
    for key, value in geom.wcs().header_cards().items():
        recs.append({"name": key, "value": value})
    recs += [
        {"name": "IMAGEW", "value": geom.width},
        {"name": "IMAGEH", "value": geom.height},
        {"name": "FILTERX", "value": co.band, "comment": "Filter short name"},
        {"name": "MJD_MIN", "value": min(co.mjds), "comment": "Earliest MJD in coadd"},
        {"name": "MJD_MAX", "value": max(co.mjds), "comment": "Latest MJD in coadd"},
        {"name": "MJD_MEAN", "value": float(np.mean(co.mjds)), "comment": "Mean MJD in coadd"},
        {"name": "IMTYPE", "value": kind, "comment": "LegacySurveys image type"},
        {"name": "PRODTYPE", "value": PRODTYPE[kind], "comment": "NOIRLab image type"},
    ]
    if kind in ("image", "model"):
        recs.append({"name": "MAGZERO", "value": 22.5, "comment": "Magnitude zeropoint"})
        recs.append(
            {
                "name": "BUNIT",
                "value": "nanomaggy",
                "comment": "AB mag = 22.5 - 2.5*log10(nanomaggy)",
            }
        )
    if kind in ("invvar", "depth", "galdepth"):
        recs.append(
            {
                "name": "BUNIT",
                "value": "1/nanomaggy^2",
                "comment": "Inverse-variance maps; ABmag=22.5-2.5*log10(nmgy)",
            }
        )
    if kind == "psfsize":
        recs.append({"name": "BUNIT", "value": "arcsec", "comment": "Effective PSF size"})
    return recs


def write_coadd_image(
    path: Path, data: npt.NDArray[Any], header: list[dict[str, Any]], extname: str, kind: str
) -> Path:
    """Write one tile-compressed coadd image atomically (legacypipe's compression)."""
    import fitsio

    kwargs = dict(COMPRESSION[kind])
    if kwargs.get("compress") != "HCOMPRESS":
        kwargs["dither_seed"] = "checksum"
    with atomic_path(path) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as out:
        out.write(data, header=header, extname=extname, **kwargs)
    return path


def ccds_table(
    ccds: npt.NDArray[np.void], tims: Sequence[Tim], footprints: dict[int, TimFootprint]
) -> npt.NDArray[np.void]:
    """The ``-ccds.fits`` rows: survey-ccds columns of tims that landed, plus bounds and norms."""
    extra = [
        ("ccd_x0", "i2"),
        ("ccd_x1", "i2"),
        ("ccd_y0", "i2"),
        ("ccd_y1", "i2"),
        ("brick_x0", "i2"),
        ("brick_x1", "i2"),
        ("brick_y0", "i2"),
        ("brick_y1", "i2"),
        ("psfnorm", "f4"),
        ("galnorm", "f4"),
        ("skyver", "S20"),
        ("psfver", "S20"),
        ("skyplver", "S8"),
        ("psfplver", "S8"),
    ]
    base = ccds.dtype.descr
    names = set(ccds.dtype.names or ())
    dtype = np.dtype([d for d in base if d[0] not in {e[0] for e in extra}] + extra)
    used = [i for i in range(len(tims)) if i in footprints]
    out = np.zeros(len(used), dtype)
    for j, i in enumerate(used):
        tim = tims[i]
        row = ccds[tim.ccd_row]
        for name in dtype.names or ():
            if name in names and name not in {e[0] for e in extra}:
                out[name][j] = row[name]
        fp = footprints[i]
        for key in ("ccd_x0", "ccd_x1", "ccd_y0", "ccd_y1"):
            out[key][j] = getattr(fp, key)
        for key in ("brick_x0", "brick_x1", "brick_y0", "brick_y1"):
            out[key][j] = getattr(fp, key)
        out["psfnorm"][j] = tim.psfnorm
        out["galnorm"][j] = tim.galnorm
        plver = row["plver"] if "plver" in names else b""
        out["skyver"][j] = out["psfver"][j] = ENGINE
        out["skyplver"][j] = out["psfplver"][j] = plver
    return out


def write_table(path: Path, rows: npt.NDArray[np.void], extname: str | None = None) -> Path:
    """Write a FITS binary table atomically."""
    import fitsio

    with atomic_path(path) as tmp:
        fitsio.write(str(tmp), rows, extname=extname, clobber=True)
    return path


def band_channels(
    images: Mapping[str, npt.NDArray[np.float32]],
    stretch: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]],
) -> npt.NDArray[np.float32]:
    """(H, W, 3): each band's image times its scale, stretched, in its channel (g→B, r→G, z→R)."""
    first = next(iter(images.values()))
    rgb = np.zeros((*first.shape, 3), np.float32)
    for band, img in images.items():
        if band in RGB_SCALES:
            channel, scale = RGB_SCALES[band]
            rgb[:, :, channel] = stretch(img * np.float32(scale))
    return rgb


def to_jpeg_pixels(rgb: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """Clip to [0, 1] and convert to 8-bit rows, north up (the brick grid's y runs south up)."""
    rgb = np.clip(rgb, 0.0, 1.0)
    return np.ascontiguousarray((rgb[::-1] * 255.0 + 0.5).astype(np.uint8))


def rgb_image(
    images: dict[str, npt.NDArray[np.float32]], q: float = 20.0, m: float = 0.03
) -> npt.NDArray[np.uint8]:
    """An asinh-stretched colour picture (H, W, 3) from band images (g→B, r→G, z→R), north up."""
    rgb = band_channels(images, lambda x: np.maximum(np.float32(0.0), x + np.float32(m)))
    intensity = rgb.mean(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        fac = np.where(intensity > 0, np.arcsinh(intensity * q) / (q * intensity), 0.0)
    rgb *= fac[:, :, None]
    return to_jpeg_pixels(rgb)


def write_jpeg(path: Path, rgb: npt.NDArray[np.uint8]) -> Path:
    """Write an RGB array as a JPEG atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(rgb, "RGB").save(tmp, format="JPEG", quality=90)
    return path


def stage_coadds(
    *,
    layout: ReleaseLayout,
    geom: BrickGeometry,
    bands: Sequence[str],
    tims: Sequence[Tim],
    ccds: npt.NDArray[np.void],
    model_images: Sequence[npt.NDArray[np.float32] | None] | None = None,
) -> dict[str, Any]:
    """Stage ``coadds``: write the coadd products; state gains ``coadd_products`` and depths."""
    brick = geom.brickname
    products: list[Path] = []
    footprints: dict[int, TimFootprint] = {}
    images: dict[str, npt.NDArray[np.float32]] = {}
    depth_summary: dict[str, dict[str, float]] = {}
    unique = unique_pixels(geom)
    depth_table = DepthTable(unique, bands)
    models: dict[str, npt.NDArray[np.float32]] = {}
    invvars: dict[str, npt.NDArray[np.float32]] = {}
    for band in bands:
        co = coadd_band(tims, geom, band, model_images, footprints)
        if co is None:
            log.info("%s: no %s tim on the brick", brick, band)
            continue
        for kind, data in co.maps().items():
            path = layout.coadd(brick, kind, band)
            header = coadd_header(geom, co, kind)
            products.append(write_coadd_image(path, data, header, f"{kind.upper()}_{band}", kind))
        images[band] = co.image
        depth_table.add(band, co.depth, co.galdepth)
        if co.model is not None:
            models[band], invvars[band] = co.model, co.invvar
        good = co.depth > 0
        depth_summary[band] = {
            "median_psfdepth": float(np.median(co.depth[good])) if good.any() else 0.0,
            "coverage": float(good.mean()),
        }
        del co
    table = ccds_table(ccds, tims, footprints)
    products.append(write_table(layout.coadd_ccds(brick), table, "CCDS"))
    products.append(depth_table.write(layout.coadd_depth_table(brick)))
    if images:
        products.append(write_jpeg(layout.coadd_jpeg(brick, "image"), rgb_image(images)))
        from lsdr.survey.runbrick.jpeg import write_model_jpegs  # jpeg.py imports this module

        products += write_model_jpegs(layout, brick, images, models, invvars, unique)
    return {"coadd_products": products, "coadd_depths": depth_summary}
