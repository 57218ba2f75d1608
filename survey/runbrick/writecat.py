"""The writecat stage's files: the tractor catalogue, tractor-i and the brick's checksum file.

``finalize_catalog`` fills the columns that follow from the fitted sources and the brick
(objid, brick_primary, bx/by, extinction, type-dependent nulls); ``write_catalog`` writes
``tractor/<bri>/tractor-<brick>.fits`` (HDU ``CATALOG``, the schema's columns in order, units
as ``TUNITn``) and ``tractor-i/<bri>/tractor-i-<brick>.fits`` (HDU ``CATALOG-INTERMEDIATE``,
every column handed in), each atomically, then ``tractor/<bri>/brick-<brick>.sha256sum`` over
every product of the brick so that ``cd <release> && sha256sum -c`` on it passes.
``read_catalog`` reads a catalogue back and checks it against the schema.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fitsio
import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree

from lsdr.survey.core.errors import InputFileError, UsageError
from lsdr.survey.core.fileio import atomic_path, sha256_file, write_text_atomic
from lsdr.survey.core.layout import ReleaseLayout, checked_brick
from lsdr.survey.posttractor.releasefiles import BACKUP_GLOBS, CHECKSUM_SUFFIX
from lsdr.survey.runbrick import tractorschema as ts
from lsdr.survey.runbrick.types import BrickGeometry

CATALOG_EXTNAME = "CATALOG"
"""HDU name of the tractor catalogue."""
INTERMEDIATE_EXTNAME = "CATALOG-INTERMEDIATE"
"""HDU name of the tractor-i catalogue."""
ENGINE = "lite"
"""Value of the ``LSDRENGN`` header card: the engine that made the catalogue."""

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
SMALL_FRACIN = 1e-3
"""Below this fraction of its profile inside the images, a band's flux and ivar are zeroed."""
NEAREST_NEIGHBOR_MAX_ARCSEC = 60.0
"""``nearest_neighbor`` (dr11) looks this far; 0 when no other source is that close."""


@dataclass(frozen=True)
class CatalogPaths:
    """The files ``write_catalog`` wrote."""

    tractor: Path
    tractor_i: Path
    checksums: Path


@dataclass(frozen=True)
class SchemaSpec:
    """Which schema a catalogue follows (bands, flavour, WISE columns, light-curve length)."""

    bands: tuple[str, ...]
    release_flavour: str = "dr10"
    wise: bool = True
    lc_epochs: int = ts.DEFAULT_LC_EPOCHS

    def columns(self) -> list[ts.Column]:
        """The schema's columns."""
        return ts.tractor_columns(
            self.bands,
            release_flavour=self.release_flavour,
            wise=self.wise,
            lc_epochs=self.lc_epochs if self.wise else 0,
        )


# -- finalize ------------------------------------------------------------------------------


def finalize_catalog(
    catalog: npt.NDArray[np.void],
    geometry: BrickGeometry,
    *,
    bands: Sequence[str],
    release: int,
    ebv: npt.ArrayLike | None = None,
    maskbits_map: npt.NDArray[np.integer[Any]] | None = None,
    regular: npt.ArrayLike | None = None,
) -> npt.NDArray[np.void]:
    """Fill the derived columns of a catalogue and return it sorted by the new ``objid``.

    - ``release``, ``brickid``, ``brickname`` (widened for a ``custom-`` name; and
      ``ls_id_dr11`` if the schema has it);
    - ``bx``, ``by``: 0-based pixel of (ra, dec) on the brick grid ``geometry.wcs()``;
    - ``objid``: 0..N−1 in RA order, regular in-bounds sources first, then other in-bounds
      sources, then regular and other out-of-bounds ones (``regular`` false marks reference
      sources kept without a fit, e.g. after ``--bail-out``; default all regular);
    - ``brick_primary``: ra1 ≤ ra < ra2 (wrapping through 0) and dec1 ≤ dec < dec2;
    - ``maskbits``: ``maskbits_map[round(by), round(bx)]`` (clipped) when a map is given;
    - ``ebv`` and ``mw_transmission_*``: from ``ebv`` (None: no dust map, ebv 0 and
      transmission 1, the documented null);
    - per band: flux and flux_ivar zeroed where ``fracin`` < 1e-3, flux zeroed where
      flux_ivar is 0 — so a fitter must set ``fracin`` (1 when it does not measure it);
    - ``sersic`` 4 for DEV, 1 for EXP/REX, 0 for PSF; shape columns zeroed for PSF, and the
      ellipticities for REX (round);
    - ``ra_ivar``/``dec_ivar`` left as given when non-zero, else estimated for a point source
      from the per-band S/N and PSF size: σ = √2 σ_psf / (S/N), combined over bands (deg⁻²,
      on-sky);
    - ``nearest_neighbor`` (dr11 schema) within 1′.
    """
    bands = tuple(bands)
    names = set(catalog.dtype.names or ())
    missing = [c for c in ("ra", "dec", "type", "objid", "bx", "by") if c not in names]
    if missing:
        raise UsageError(f"catalogue lacks columns {missing}")
    cat = _with_brickname_room(np.array(catalog, copy=True), geometry.brickname)
    n = len(cat)
    cat["ra"] = np.mod(cat["ra"], 360.0)
    ra = np.asarray(cat["ra"], np.float64)
    dec = np.asarray(cat["dec"], np.float64)

    for col, value in (
        ("release", release),
        ("brickid", geometry.brickid),
        ("brickname", geometry.brickname),
    ):
        if col in names:
            cat[col] = value

    x, y = geometry.wcs().radec_to_pixel(ra, dec)
    bx = (x - 1.0).astype(np.float32)
    by = (y - 1.0).astype(np.float32)
    cat["bx"] = bx
    cat["by"] = by
    ibx = np.round(bx).astype(np.int64)
    iby = np.round(by).astype(np.int64)
    in_bounds = (ibx >= 0) & (iby >= 0) & (ibx < geometry.width) & (iby < geometry.height)
    reg = np.ones(n, bool) if regular is None else np.asarray(regular, bool)
    if reg.shape != (n,):
        raise UsageError(f"regular has shape {reg.shape}, expected ({n},)")
    group = np.where(in_bounds, 0, 2) + np.where(reg, 0, 1)
    order = np.lexsort((dec, ra, group))
    objid = np.empty(n, np.int64)
    objid[order] = np.arange(n)
    cat["objid"] = objid

    if "brick_primary" in names:
        cat["brick_primary"] = brick_primary(ra, dec, geometry)
    if maskbits_map is not None and "maskbits" in names:
        h, w = maskbits_map.shape
        cat["maskbits"] = maskbits_map[np.clip(iby, 0, h - 1), np.clip(ibx, 0, w - 1)]

    e = np.zeros(n) if ebv is None else np.broadcast_to(np.asarray(ebv, np.float64), (n,))
    if "ebv" in names:
        cat["ebv"] = e
    for band in (*bands, *ts.WISE_BANDS):
        col = f"mw_transmission_{band}"
        if col in names and band in ts.MW_K:
            cat[col] = ts.mw_transmission(band, e)

    for band in bands:
        flux, ivar, fracin = f"flux_{band}", f"flux_ivar_{band}", f"fracin_{band}"
        if flux not in names or ivar not in names:
            continue
        if fracin in names:
            small = cat[fracin] < SMALL_FRACIN
            cat[flux][small] = 0.0
            cat[ivar][small] = 0.0
        cat[flux][cat[ivar] == 0] = 0.0

    types = np.char.strip(np.asarray(cat["type"]).astype("U3"))
    if "sersic" in names:
        cat["sersic"][types == "DEV"] = 4.0
        cat["sersic"][(types == "EXP") | (types == "REX")] = 1.0
        cat["sersic"][types == "PSF"] = 0.0
    for col in ("shape_r", "shape_r_ivar", "sersic_ivar"):
        if col in names:
            cat[col][types == "PSF"] = 0.0
    for col in ("shape_e1", "shape_e1_ivar", "shape_e2", "shape_e2_ivar"):
        if col in names:
            cat[col][(types == "PSF") | (types == "REX")] = 0.0

    if "ra_ivar" in names and "dec_ivar" in names:
        est = position_ivar_estimate(cat, bands)
        unset = (cat["ra_ivar"] == 0) & (cat["dec_ivar"] == 0)
        cat["ra_ivar"][unset] = est[unset]
        cat["dec_ivar"][unset] = est[unset]

    if "ls_id_dr11" in names:
        cat["ls_id_dr11"] = (
            (np.asarray(cat["release"], np.int64) << 42)
            | (np.asarray(cat["brickid"], np.int64) << 22)
            | np.asarray(cat["objid"], np.int64)
        )
    if "nearest_neighbor" in names:
        cat["nearest_neighbor"] = nearest_neighbor_arcsec(ra, dec)
    return cat[np.argsort(cat["objid"], kind="stable")]


def _with_brickname_room(cat: npt.NDArray[np.void], brick: str) -> npt.NDArray[np.void]:
    """``cat`` with a ``brickname`` column wide enough for ``brick`` (S8 holds no custom name)."""
    names = cat.dtype.names or ()
    if "brickname" not in names:
        return cat
    have = cat.dtype["brickname"]
    if have.kind not in "SU" or have.itemsize // (4 if have.kind == "U" else 1) >= len(brick):
        return cat
    wide = np.dtype(f"{have.kind}{len(brick)}")
    out = np.zeros(
        len(cat), np.dtype([(n, wide if n == "brickname" else cat.dtype[n]) for n in names])
    )
    for n in names:
        out[n] = cat[n]
    return out


def brick_primary(
    ra: npt.ArrayLike, dec: npt.ArrayLike, geometry: BrickGeometry
) -> npt.NDArray[np.bool_]:
    """Whether positions lie in the brick's unique area (RA wrapping through 0 handled)."""
    r = np.asarray(ra, np.float64)
    d = np.asarray(dec, np.float64)
    in_dec = (d >= geometry.dec1) & (d < geometry.dec2)
    if geometry.ra1 > geometry.ra2:
        in_ra = (r >= geometry.ra1) | (r < geometry.ra2)
    else:
        in_ra = (r >= geometry.ra1) & (r < geometry.ra2)
    return np.asarray(in_ra & in_dec)


def position_ivar_estimate(
    catalog: npt.NDArray[np.void], bands: Sequence[str]
) -> npt.NDArray[np.float32]:
    """Point-source position inverse variance (deg⁻², per axis) from S/N and PSF FWHM.

    For a Gaussian PSF of width σ_psf and background-limited noise, σ_pos = √2 σ_psf / (S/N);
    bands are combined by adding inverse variances.  0 where no band has S/N and a PSF size.
    """
    names = set(catalog.dtype.names or ())
    total = np.zeros(len(catalog))
    for band in bands:
        cols = (f"flux_{band}", f"flux_ivar_{band}", f"psfsize_{band}")
        if not all(c in names for c in cols):
            continue
        flux = np.asarray(catalog[cols[0]], np.float64)
        ivar = np.asarray(catalog[cols[1]], np.float64)
        sigma = np.asarray(catalog[cols[2]], np.float64) / FWHM_PER_SIGMA
        ok = (flux > 0) & (ivar > 0) & (sigma > 0)
        snr2 = np.where(ok, flux**2 * ivar, 0.0)
        total += np.where(ok, snr2 / (2.0 * np.where(ok, sigma, 1.0) ** 2), 0.0)
    return np.asarray(total * 3600.0**2, np.float32)


def nearest_neighbor_arcsec(ra: npt.ArrayLike, dec: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Distance (arcsec) to the nearest other position within 1′, 0 when there is none."""
    r = np.radians(np.asarray(ra, np.float64))
    d = np.radians(np.asarray(dec, np.float64))
    out = np.zeros(len(r), np.float32)
    if len(r) < 2:
        return out
    xyz = np.column_stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)])
    chord_max = 2.0 * np.sin(np.radians(NEAREST_NEIGHBOR_MAX_ARCSEC / 3600.0) / 2.0)
    dist, _idx = cKDTree(xyz).query(xyz, k=2, distance_upper_bound=chord_max)
    found = np.isfinite(dist[:, 1])
    angle = 2.0 * np.arcsin(np.clip(dist[found, 1] / 2.0, 0.0, 1.0))
    out[found] = np.degrees(angle) * 3600.0
    return out


# -- header --------------------------------------------------------------------------------


def catalog_header(
    geometry: BrickGeometry,
    spec: SchemaSpec,
    *,
    release: int,
    header_extra: Mapping[str, Any] | None = None,
) -> fitsio.FITSHDR:
    """The primary header of tractor and tractor-i: brick, bands, bits, apertures, engine.

    ``header_extra`` values are either a value or a ``(value, comment)`` pair; they come
    last and may override earlier cards.
    """
    hdr = fitsio.FITSHDR()

    def card(name: str, value: Any, comment: str = "") -> None:
        hdr.add_record({"name": name, "value": value, "comment": comment})

    card("LSDRENGN", ENGINE, "lsdr engine that made this catalogue")
    card("LSDRSCHM", spec.release_flavour, "lsdr tractor schema flavour")
    card("RELEASE", int(release), "Legacy Surveys release number of the processing")
    card("BRICKNAM", geometry.brickname, "brick name")
    card("BRICK", geometry.brickname, "LegacySurveys brick RRRr[pm]DDd")
    card("BRICKID", int(geometry.brickid), "LegacySurveys brick id")
    card("RAMIN", float(geometry.ra1), "brick RA min (deg)")
    card("RAMAX", float(geometry.ra2), "brick RA max (deg)")
    card("DECMIN", float(geometry.dec1), "brick Dec min (deg)")
    card("DECMAX", float(geometry.dec2), "brick Dec max (deg)")
    card("CENTRA", float(geometry.ra), "brick centre RA (deg)")
    card("CENTDEC", float(geometry.dec), "brick centre Dec (deg)")
    card("BANDS", ",".join(spec.bands), "bands of this catalogue")
    card("NBANDS", len(spec.bands), "number of bands in this catalogue")
    for i, band in enumerate(spec.bands):
        card(f"BAND{i}", band, "band name in this catalogue")
    card("WISECOLS", bool(spec.wise), "catalogue has unWISE columns")
    card("LCEPOCHS", int(spec.lc_epochs if spec.wise else 0), "light-curve epochs (0: none)")
    for i, model in enumerate(ts.DCHISQ_MODELS):
        card(f"DCHISQ_{i}", model, "model of dchisq entry")

    mbits = ts.maskbits(spec.bands, spec.release_flavour)
    _bit_cards(card, mbits, ts.maskbits_descriptions(mbits), "MB_", "MBIT_", "maskbit")
    _bit_cards(card, ts.FITBITS, ts.FITBITS_DESCRIPTIONS, "FB_", "FBIT_", "fitbit")
    dq = {k.upper(): v for k, v in ts.DQ_BITS.items()}
    _bit_cards(card, dq, {k: "CP data-quality bit" for k in dq}, "AM_", "ABIT_", "allmask")
    if spec.wise:
        wb = ts.WISEMASK_BITS
        _bit_cards(card, wb, {k: "unWISE mask bit" for k in wb}, "WB_", "WBIT_", "wisemask")

    card("PRODTYPE", "catalog", "data product type")
    for i, radius in enumerate(ts.APRAD):
        card(f"APRAD{i}", radius, "optical aperture radius (arcsec)")
    if spec.wise:
        for i, radius in enumerate(ts.WAPRAD):
            card(f"WAPRAD{i}", radius, "unWISE aperture radius (arcsec)")
        for i, band in enumerate(ts.WISE_BANDS):
            card(f"WISEAB{i + 1}", ts.WISE_VEGA_TO_AB[band], "WISE Vega to AB (mag)")
    for key, value in (header_extra or {}).items():
        if isinstance(value, tuple):
            card(key, value[0], str(value[1]))
        else:
            card(key, value)
    return hdr


def _bit_cards(
    card: Any,
    bits: Mapping[str, int],
    descriptions: Mapping[str, str],
    name_prefix: str,
    bit_prefix: str,
    what: str,
) -> None:
    """``<prefix><NAME> = value`` for each bit, then ``<bitprefix><n> = NAME`` by bit number."""
    for name, value in bits.items():
        card(f"{name_prefix}{name}", int(value), f"{what}: {descriptions.get(name, '')}")
    for name, value in sorted(bits.items(), key=lambda kv: kv[1]):
        bit = int(value).bit_length() - 1
        card(
            f"{bit_prefix}{bit}", name, f"{what} {bit} (0x{value:x}): {descriptions.get(name, '')}"
        )


# -- write ---------------------------------------------------------------------------------


def write_catalog(
    layout: ReleaseLayout,
    brick_geometry: BrickGeometry,
    catalog: npt.NDArray[np.void],
    *,
    bands: Sequence[str],
    release: int,
    header_extra: Mapping[str, Any] | None = None,
    release_flavour: str = "dr10",
    wise: bool = True,
    lc_epochs: int = ts.DEFAULT_LC_EPOCHS,
) -> CatalogPaths:
    """Write the brick's tractor and tractor-i catalogues, then its checksum file.

    ``catalog`` must hold every schema column (start from ``empty_catalog`` so unmeasured
    columns keep their nulls); extra columns go to tractor-i only.  Rows are written in
    ``objid`` order.  Both files are written atomically, the checksum file last, so a
    checksum file exists only beside complete catalogues.
    """
    brick = checked_brick(brick_geometry.brickname)
    spec = SchemaSpec(tuple(bands), release_flavour, wise, lc_epochs if wise else 0)
    columns = spec.columns()
    names = list(catalog.dtype.names or ())
    problems = _missing_or_incompatible(catalog.dtype, columns)
    if problems:
        raise UsageError(f"catalogue for brick {brick} does not fit the schema: {problems}")
    if len(set(names)) != len(names):
        raise UsageError(f"catalogue for brick {brick} has duplicate columns")
    ordered = catalog[np.argsort(catalog["objid"], kind="stable")]

    out_dtype = np.dtype([_widen_brickname(ts.column_dtype(c), brick, c.name) for c in columns])
    tractor = np.zeros(len(ordered), out_dtype)
    for c in columns:
        tractor[c.name] = ordered[c.name]
    units = [c.unit for c in columns]
    hdr = catalog_header(brick_geometry, spec, release=release, header_extra=header_extra)

    tractor_i_path = layout.tractor_i(brick)
    with atomic_path(tractor_i_path) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as f:
        f.write(None, header=hdr)
        f.write(_to_fits_ready(ordered), extname=INTERMEDIATE_EXTNAME)
    tractor_path = layout.tractor(brick)
    with atomic_path(tractor_path) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as f:
        f.write(None, header=hdr)
        f.write(tractor, extname=CATALOG_EXTNAME, units=units)
    checksums = write_brick_checksums(layout, brick)
    return CatalogPaths(tractor=tractor_path, tractor_i=tractor_i_path, checksums=checksums)


def _widen_brickname(field: tuple[Any, ...], brick: str, name: str) -> tuple[Any, ...]:
    """brickname is S8 on the grid; custom bricks (``custom-…``) need a wider column."""
    if name == "brickname" and len(brick) > 8:
        return (name, np.dtype(f"S{len(brick)}"))
    return field


def _to_fits_ready(table: npt.NDArray[np.void]) -> npt.NDArray[np.void]:
    """The table with unicode columns as ASCII bytes (FITS has no unicode strings)."""
    dtype = table.dtype
    if not any(dtype[n].kind == "U" for n in dtype.names or ()):
        return table
    fields = []
    for n in dtype.names or ():
        dt = dtype[n]
        if dt.kind == "U":
            fields.append((n, np.dtype(f"S{max(1, dt.itemsize // 4)}")))
        else:
            fields.append((n, dt))
    out = np.zeros(len(table), np.dtype(fields))
    for n in dtype.names or ():
        out[n] = table[n]
    return out


def _missing_or_incompatible(dtype: np.dtype[Any], columns: Sequence[ts.Column]) -> list[str]:
    """Schema columns that ``dtype`` lacks or holds in a type that cannot be cast safely."""
    names = set(dtype.names or ())
    problems = []
    for c in columns:
        if c.name not in names:
            problems.append(f"missing {c.name}")
            continue
        have = dtype[c.name]
        want = np.dtype(ts.column_dtype(c)[1])
        if have.shape != c.shape:
            problems.append(f"{c.name} has shape {have.shape}, expected {c.shape}")
        elif want.kind == "S":
            if have.base.kind not in "SU":
                problems.append(f"{c.name} is {have.base}, expected a string")
        elif not np.can_cast(have.base, want, "same_kind"):
            problems.append(f"{c.name} is {have.base}, expected {want}")
    return problems


# -- checksums -----------------------------------------------------------------------------


def brick_products(layout: ReleaseLayout, brick: str) -> list[Path]:
    """Every existing product of a brick that its checksum file covers, sorted by path.

    The tractor and tractor-i catalogues, every file in ``coadd/<bri>/<brick>/`` and the
    brick's files in ``metrics/<bri>/`` (``*-<brick>.*``); never temporary (``tmp-``) files,
    checksum files (the package phase's listing of the coadd directory lives in it: listing it
    would make a rerun's checksums differ from the first run's), the bright-neighbour step's
    backups (``…-maskbits-orig.fits.fz``: left from an earlier pass when the brick runs again,
    they would make a rerun's listing differ from a fresh release's), logs, pickles or
    checkpoints.
    """
    b = checked_brick(brick)
    found: list[Path] = []
    for path in (layout.tractor(b), layout.tractor_i(b)):
        if path.is_file():
            found.append(path)
    coadd = layout.coadd_dir(b)
    if coadd.is_dir():
        found.extend(p for p in coadd.iterdir() if p.is_file())
    metrics = layout.metrics_dir(b)
    if metrics.is_dir():
        found.extend(p for p in metrics.iterdir() if p.is_file() and f"-{b}." in p.name)
    keep = [
        p
        for p in found
        if not p.name.startswith("tmp-")
        and p.suffix != CHECKSUM_SUFFIX
        and not any(p.match(g) for g in BACKUP_GLOBS)
    ]
    return sorted(keep, key=lambda p: p.relative_to(layout.root).as_posix())


def write_brick_checksums(layout: ReleaseLayout, brick: str) -> Path:
    """Write ``tractor/<bri>/brick-<brick>.sha256sum``: ``<sha256> *<path from the release>``."""
    lines = [
        f"{sha256_file(p)} *{p.relative_to(layout.root).as_posix()}\n"
        for p in brick_products(layout, brick)
    ]
    return write_text_atomic(layout.brick_checksums(brick), "".join(lines))


# -- read ----------------------------------------------------------------------------------


def read_catalog(
    path: Path,
    *,
    bands: Sequence[str] | None = None,
    release_flavour: str | None = None,
    wise: bool | None = None,
    lc_epochs: int | None = None,
) -> npt.NDArray[np.void]:
    """Read a tractor (or tractor-i) catalogue and check it against the schema.

    The schema is the one named in the header by lsdr's writer (``BANDS``, ``LSDRSCHM``,
    ``WISECOLS``, ``LCEPOCHS``), else inferred from the columns (legacypipe's own files),
    unless given here.  A tractor file must hold exactly the schema's columns in order; a
    tractor-i file (HDU ``CATALOG-INTERMEDIATE``) at least the schema's columns.  Returns
    the table in native byte order with strings as bytes.  Raises ``InputFileError`` naming
    the file and HDU when it is missing, truncated or does not match.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: tractor catalogue not found")
    ext: str | None = None
    try:
        with fitsio.FITS(str(path)) as f:
            hdus = [hdu.get_extname() for hdu in f]
            ext = next((e for e in (CATALOG_EXTNAME, INTERMEDIATE_EXTNAME) if e in hdus), None)
            if ext is None:
                raise InputFileError(f"{path}: no {CATALOG_EXTNAME} HDU (found {hdus})")
            primary = f[0].read_header()
            nrows = f[ext].get_nrows()
            data = f[ext].read()
    except InputFileError:
        raise
    except (OSError, ValueError, RuntimeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        hdu = f" [{ext}]" if ext else ""
        raise InputFileError(f"{path}{hdu}: unreadable or truncated FITS file: {first}") from err
    if data is None:
        data = np.zeros(0, dtype=[])
    if len(data) != nrows:
        raise InputFileError(f"{path} [{ext}]: read {len(data)} of {nrows} rows (truncated)")
    where = f"{path} [{ext}]"
    spec = _schema_spec(data.dtype, primary, bands, release_flavour, wise, lc_epochs, where)
    columns = spec.columns()
    problems = _schema_problems(data.dtype, columns, exact=ext == CATALOG_EXTNAME)
    if problems:
        shown = "; ".join(problems[:8]) + (
            f"; … {len(problems) - 8} more" if len(problems) > 8 else ""
        )
        raise InputFileError(
            f"{where}: does not match the {spec.release_flavour} tractor schema for bands "
            f"{','.join(spec.bands)}: {shown}"
        )
    return _native(data)


def _schema_spec(
    dtype: np.dtype[Any],
    primary: fitsio.FITSHDR,
    bands: Sequence[str] | None,
    flavour: str | None,
    wise: bool | None,
    lc_epochs: int | None,
    where: str,
) -> SchemaSpec:
    """The schema to check against: arguments, else lsdr header cards, else the columns."""
    names = list(dtype.names or ())
    ours = "LSDRSCHM" in primary
    if bands is None:
        if ours and "BANDS" in primary:
            bands = [b for b in str(primary["BANDS"]).split(",") if b]
        else:
            stems = [n[5:] for n in names if n.startswith("flux_") and n[5:] not in ts.WISE_BANDS]
            bands = [b for b in stems if not b.startswith("ivar_")]
    if not bands:
        raise InputFileError(f"{where}: no flux_<band> columns, not a tractor catalogue")
    if flavour is None:
        if ours:
            flavour = str(primary["LSDRSCHM"]).strip()
        elif "ls_id_dr11" in names:
            flavour = "dr11"
        elif "maskbits" in names and dtype["maskbits"].itemsize == 2:
            flavour = "dr9"
        else:
            flavour = "dr10"
    if flavour not in ts.FLAVOURS:
        raise InputFileError(f"{where}: unknown schema flavour {flavour!r}")
    if wise is None:
        wise = bool(primary["WISECOLS"]) if ours and "WISECOLS" in primary else "flux_w1" in names
    if lc_epochs is None:
        if ours and "LCEPOCHS" in primary:
            lc_epochs = int(primary["LCEPOCHS"])
        elif "lc_flux_w1" in names:
            shape = dtype["lc_flux_w1"].shape
            lc_epochs = int(shape[0]) if shape else 1
        else:
            lc_epochs = 0
    try:
        return SchemaSpec(tuple(bands), flavour, bool(wise), int(lc_epochs) if wise else 0)
    except UsageError as err:
        raise InputFileError(f"{where}: {err}") from err


def _schema_problems(
    dtype: np.dtype[Any], columns: Sequence[ts.Column], *, exact: bool
) -> list[str]:
    """Differences between a table's columns and the schema (names, order, types, shapes)."""
    names = list(dtype.names or ())
    problems = []
    want_names = [c.name for c in columns]
    if exact:
        extra = [n for n in names if n not in set(want_names)]
        if extra:
            problems.append(f"unexpected columns {extra}")
    missing = [n for n in want_names if n not in names]
    if missing:
        problems.append(f"missing columns {missing}")
    if exact and not missing and not problems and names != want_names:
        first = next(i for i, (a, b) in enumerate(zip(names, want_names, strict=False)) if a != b)
        problems.append(
            f"column {first + 1} (TTYPE{first + 1}) is {names[first]}, expected {want_names[first]}"
        )
    for c in columns:
        if c.name not in names:
            continue
        have = dtype[c.name]
        want = np.dtype(ts.column_dtype(c)[1])
        shape = have.shape
        if shape != c.shape:
            problems.append(f"{c.name} has shape {shape}, expected {c.shape}")
            continue
        base = have.base
        if want.kind == "S":
            width = base.itemsize // 4 if base.kind == "U" else base.itemsize
            ok = base.kind in "SU" and (
                width >= want.itemsize if c.name == "brickname" else width == want.itemsize
            )
        else:
            ok = base.kind == want.kind and base.itemsize == want.itemsize
        if not ok:
            problems.append(f"{c.name} is {base.str}, expected {want.str}")
    return problems


def _native(data: npt.NDArray[np.void]) -> npt.NDArray[np.void]:
    """The table in native byte order, unicode columns as bytes (as the schema's dtypes)."""
    fields = []
    for n in data.dtype.names or ():
        dt = data.dtype[n]
        base = dt.base
        if base.kind == "U":
            base = np.dtype(f"S{max(1, base.itemsize // 4)}")
        elif base.kind in "iuf":
            base = base.newbyteorder("=")
        fields.append((n, base, dt.shape) if dt.shape else (n, base))
    out = np.zeros(len(data), np.dtype(fields))
    for n in data.dtype.names or ():
        out[n] = data[n]
    return out
