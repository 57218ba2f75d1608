"""Fake but schema-valid runbrick outputs, made in milliseconds, for post-processing tests/benches.

Per brick: a tractor catalogue in the lsdr schema (every column random, then the columns the
post-processing reads made consistent: positions around the brick, ``brick_primary`` from the
brick bounds, types, positive depths and transmissions) and one small ``nexp-<b>`` coadd per
band on the brick's TAN grid (legacypipe's 3600 × 0.262″ footprint at a coarser pixel scale).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lsdr.survey.core.bricks import brick_by_name
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.runbrick.tractorschema import empty_catalog, mw_transmission

TYPES = np.array(["PSF", "REX", "EXP", "DEV", "SER", "DUP"])
MARGIN_DEG = 0.01
"""Objects are spread this far beyond the brick bounds (non-primary ones)."""


def fake_catalog(brick: str, n: int, bands: Sequence[str], rng: np.random.Generator) -> np.ndarray:
    """A tractor catalogue of ``n`` random objects around ``brick`` (lsdr dr10 schema)."""
    b = brick_by_name(brick)
    cat = empty_catalog(n, bands)
    for name in cat.dtype.names or ():
        field = cat[name]
        kind = field.dtype.kind
        if kind == "f":
            field[...] = rng.normal(size=field.shape)
        elif kind in "iu":
            field[...] = rng.integers(0, 100, size=field.shape)
        elif kind == "b":
            field[...] = rng.random(size=field.shape) < 0.5
        elif kind == "S":
            field[...] = rng.choice(np.array(["G2", "T2", ""], "S2"), size=field.shape)
    cat["release"] = 10000
    cat["brickid"] = b.brickid
    cat["brickname"] = b.brickname
    cat["objid"] = np.arange(n)
    cat["ra"] = rng.uniform(b.ra1 - MARGIN_DEG, b.ra2 + MARGIN_DEG, n)
    cat["dec"] = rng.uniform(b.dec1 - MARGIN_DEG, b.dec2 + MARGIN_DEG, n)
    cat["brick_primary"] = [
        b.contains(r % 360.0, d) for r, d in zip(cat["ra"], cat["dec"], strict=True)
    ]
    cat["type"] = rng.choice(TYPES, size=n, p=[0.45, 0.3, 0.1, 0.08, 0.05, 0.02])
    cat["wise_coadd_id"] = "1800p318"
    cat["ebv"] = rng.uniform(0.01, 0.05, n)
    for band in [*list(bands), "w1", "w2", "w3", "w4"]:
        cat[f"mw_transmission_{band}"] = mw_transmission(band, cat["ebv"])
    for band in bands:
        cat[f"psfsize_{band}"] = rng.uniform(1.0, 2.0, n)
        cat[f"psfdepth_{band}"] = 10.0 ** rng.uniform(2.5, 3.5, n)
        cat[f"galdepth_{band}"] = 10.0 ** rng.uniform(2.2, 3.2, n)
    for w in ("w1", "w2", "w3", "w4"):
        cat[f"nobs_{w}"] = rng.integers(5, 30, n)
    return cat


def write_fake_brick(
    layout: ReleaseLayout,
    brick: str,
    rng: np.random.Generator,
    *,
    n: int = 200,
    bands: Sequence[str] = ("g", "r", "z"),
    nexp_bands: Sequence[str] | None = None,
    size: int = 360,
) -> None:
    """Write the catalogue and the ``nexp`` maps (of ``nexp_bands``, default all) of a brick."""
    import fitsio

    b = brick_by_name(brick)
    cat = fake_catalog(brick, n, bands, rng)
    path = layout.tractor(brick)
    path.parent.mkdir(parents=True, exist_ok=True)
    primary = [
        {"name": "BANDS", "value": ",".join(bands)},
        {"name": "RELEASE", "value": 10000},
        {"name": "BRICKNAM", "value": b.brickname},
        {"name": "LSDRSCHM", "value": "dr10"},
    ]
    primary += [{"name": f"COSKY_{x.upper()}", "value": float(rng.normal())} for x in bands]
    with fitsio.FITS(str(path), "rw", clobber=True) as fits:
        fits.write(None, header=primary)
        fits.write_table(cat, extname="CATALOG")
    pixscale = 0.262 * 3600 / size / 3600.0
    for band in bands if nexp_bands is None else nexp_bands:
        nexp = rng.integers(0, 13, size=(size, size)).astype(np.int16)
        header = [
            {"name": "CTYPE1", "value": "RA---TAN"},
            {"name": "CTYPE2", "value": "DEC--TAN"},
            {"name": "CRVAL1", "value": b.ra},
            {"name": "CRVAL2", "value": b.dec},
            {"name": "CRPIX1", "value": size / 2 + 0.5},
            {"name": "CRPIX2", "value": size / 2 + 0.5},
            {"name": "CD1_1", "value": -pixscale},
            {"name": "CD1_2", "value": 0.0},
            {"name": "CD2_1", "value": 0.0},
            {"name": "CD2_2", "value": pixscale},
        ]
        out = layout.coadd(brick, "nexp", band)
        out.parent.mkdir(parents=True, exist_ok=True)
        fitsio.write(
            str(out),
            nexp,
            header=header,
            extname=f"NEXP_{band}",
            compress="HCOMPRESS",
            clobber=True,
        )


def fake_bricks(count: int, ra0: float = 180.3, dec0: float = 30.3) -> list[str]:
    """Up to 240 neighbouring grid bricks inside the sweep box 180..185, 30..35, row by row."""
    from lsdr.survey.core.bricks import RaDecBox, bricks_overlapping_box

    out: list[str] = []
    dec = dec0
    while len(out) < count:
        row = bricks_overlapping_box(RaDecBox(ra0, ra0 + 4.4, dec, dec + 0.01))
        out.extend(x.brickname for x in row[: count - len(out)])
        dec += 0.25
    return out
