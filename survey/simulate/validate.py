"""Validation of tractor catalogues against a simulated survey's truth catalogue.

A brick's catalogue is matched to ``truth/truth.fits`` inside the area the brick's data cover
(``nexp`` > 0 in some band) and outside its masked areas (maskbits BRIGHT, MEDIUM, BAILOUT),
then scored with the issue's acceptance metrics: completeness of point sources against the 5σ
PSF depth, flux bias and normalised flux residuals of stars with S/N > 20, astrometric scatter
and star/galaxy typing for S/N > 50.  Plots are PNGs written with matplotlib's Agg backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.bricks import BRICK_PIXSCALE, BRICK_SIZE_PIX
from lsdr.survey.core.cameras import DEFAULT_BANDS
from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.fileio import atomic_path
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.runbrick import tractorschema as ts
from lsdr.survey.runbrick.types import BrickGeometry

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

MATCH_RADIUS_ARCSEC = 1.0
"""Largest truth–catalogue separation counted as a match."""
EXCLUDED_MASKBITS = ("BRIGHT", "MEDIUM", "BAILOUT")
"""Maskbits whose pixels are left out of the validation area."""
MAG_BIN_WIDTH = 0.25
"""Width of the magnitude bins of the completeness curve (mag relative to the 5σ depth)."""
FLUX_SN_MIN = 20.0
"""Stars with S/N above this enter the flux bias and residual metrics."""
MODERATE_SN_MAX = 50.0
"""Upper S/N of the diagnostic residual σ (stars 20 < S/N ≤ 50)."""
SN_BINS = ((5.0, 20.0), (20.0, 50.0), (50.0, 200.0), (200.0, float("inf")))
"""S/N bins of the diagnostic residual σ per bin (does the error model hold at all S/N?)."""
SHAPE_SN_MIN = 50.0
"""Objects with S/N above this enter the astrometry and typing metrics."""
COMPLETENESS_BIN = (-1.0, -0.5)
"""Δm = mag − 5σ PSF depth range of the acceptance completeness ("0.5 mag brighter")."""
MJD_J2000 = 51_544.5


@dataclass(frozen=True)
class Thresholds:
    """The issue's acceptance thresholds."""

    completeness_min: float = 0.90
    flux_bias_max: float = 0.02
    residual_sigma_range: tuple[float, float] = (0.8, 1.3)
    astrometry_max_arcsec: float = 0.05
    typing_min: float = 0.90


@dataclass
class BrickMatch:
    """Truth objects in a brick's validation area and what the catalogue measured for them.

    Arrays are per truth object; catalogue columns are NaN (or ``b""`` for ``type``) where the
    object was not matched.  ``depth_mag`` holds the 5σ PSF depth (AB mag) at the object's pixel.
    """

    brick: str
    bands: tuple[str, ...]
    true_type: npt.NDArray[np.bytes_]
    true_flux: dict[str, FloatArray]
    depth_mag: dict[str, FloatArray]
    matched: BoolArray
    sep_ra_arcsec: FloatArray
    sep_dec_arcsec: FloatArray
    cat_type: npt.NDArray[np.bytes_]
    flux: dict[str, FloatArray]
    flux_ivar: dict[str, FloatArray]
    is_ref: BoolArray
    """Matched to a reference-catalogue (Gaia) source, which lite always types PSF."""
    n_catalog: int = 0
    area_deg2: float = 0.0

    def __len__(self) -> int:
        """Number of truth objects in the validation area."""
        return len(self.matched)


@dataclass
class ValidationMetrics:
    """The acceptance numbers for one or more bricks (NaN where no object qualified)."""

    bricks: tuple[str, ...]
    n_truth: int
    n_truth_psf: int
    n_catalog: int
    area_deg2: float
    completeness_limit: dict[str, float]
    n_completeness_limit: dict[str, int]
    completeness_bright: dict[str, float]
    flux_bias: dict[str, float]
    residual_sigma: dict[str, float]
    residual_sigma_moderate: dict[str, float]
    """The same σ for 20 < S/N ≤ 50 only (where systematics matter least): a diagnostic."""
    n_flux_stars: dict[str, int]
    astrometry_arcsec: float
    astrometry_ra_arcsec: float
    astrometry_dec_arcsec: float
    n_astrometry: int
    typing_accuracy: float
    psf_as_psf: float
    galaxy_as_galaxy: float
    n_typing: int
    typing_accuracy_unforced: float
    """Typing accuracy leaving out sources matched to reference stars (typed PSF by rule)."""
    n_typing_unforced: int
    residual_sigma_by_sn: dict[str, list[tuple[float, float, float, int]]] = field(
        default_factory=dict
    )
    """Per band, (S/N low, S/N high, residual σ, number of stars) for each of ``SN_BINS``."""
    checks: dict[str, bool] = field(default_factory=dict)

    def passed(self) -> bool:
        """Whether every acceptance check holds."""
        return all(self.checks.values())


def robust_sigma(values: npt.ArrayLike) -> float:
    """1.4826 × median absolute deviation (σ of a Gaussian); NaN for no finite values."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan")
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


def _unit_vectors(ra: npt.ArrayLike, dec: npt.ArrayLike) -> FloatArray:
    r = np.radians(np.asarray(ra, np.float64))
    d = np.radians(np.asarray(dec, np.float64))
    return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=-1)


def match_radec(
    ra1: npt.ArrayLike,
    dec1: npt.ArrayLike,
    ra2: npt.ArrayLike,
    dec2: npt.ArrayLike,
    radius_arcsec: float = MATCH_RADIUS_ARCSEC,
) -> IntArray:
    """One-to-one match: for each position of list 1, the index in list 2 or −1.

    Each list-1 object takes its nearest list-2 object within the radius; when several claim
    the same one, the closest keeps it and the others stay unmatched.
    """
    from scipy.spatial import cKDTree

    v1 = _unit_vectors(ra1, dec1).reshape(-1, 3)
    v2 = _unit_vectors(ra2, dec2).reshape(-1, 3)
    out = np.full(len(v1), -1, np.int64)
    if not len(v1) or not len(v2):
        return out
    chord = 2.0 * np.sin(np.radians(radius_arcsec / 3600.0) / 2.0)
    dist, idx = cKDTree(v2).query(v1, k=1, distance_upper_bound=chord)
    ok = np.isfinite(dist)
    order = np.argsort(np.where(ok, dist, np.inf), kind="stable")
    taken = np.zeros(len(v2), bool)
    for i in order:
        if not ok[i]:
            break
        j = int(idx[i])
        if not taken[j]:
            taken[j] = True
            out[i] = j
    return out


def propagate_truth(
    truth: npt.NDArray[np.void], epoch: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Truth positions moved by their proper motions from ``ref_epoch`` to ``epoch`` (years)."""
    years = np.asarray(epoch, np.float64) - truth["ref_epoch"].astype(np.float64)
    dec = truth["dec"].astype(np.float64) + truth["pmdec"] * years / 3.6e6
    ra = truth["ra"].astype(np.float64) + truth["pmra"] * years / 3.6e6 / np.cos(
        np.radians(truth["dec"].astype(np.float64))
    )
    return ra, dec


def _read_image(path: Path) -> npt.NDArray[Any]:
    import fitsio

    if not path.exists():
        raise InputFileError(f"{path}: missing (run the brick with its coadds first)")
    try:
        return np.asarray(fitsio.read(str(path), ext=1))
    except OSError as exc:
        raise InputFileError(f"{path} HDU 1: unreadable: {exc}") from exc


def _read_table(path: Path, ext: int = 1) -> npt.NDArray[np.void]:
    import fitsio

    if not path.exists():
        raise InputFileError(f"{path}: missing")
    try:
        return np.asarray(fitsio.read(str(path), ext=ext))
    except OSError as exc:
        raise InputFileError(f"{path} HDU {ext}: unreadable: {exc}") from exc


def _mean_epoch(layout: ReleaseLayout, brick: str) -> float:
    """Mean epoch (years) of the brick's CCDs; J2015.5 when their table has no ``mjd_obs``."""
    path = layout.coadd_ccds(brick)
    if path.exists():
        ccds = _read_table(path)
        if ccds.dtype.names and "mjd_obs" in ccds.dtype.names and len(ccds):
            return float(2000.0 + (np.mean(ccds["mjd_obs"]) - MJD_J2000) / 365.25)
    return 2015.5


def validation_area(
    maskbits: npt.NDArray[np.integer[Any]],
    nexp: Sequence[npt.NDArray[np.integer[Any]]],
    bits: dict[str, int],
) -> BoolArray:
    """Brick pixels that count: observed in some band and free of the excluded maskbits.

    Per-band metrics further need the band itself: its depth is 0 (magnitude NaN) and its
    ``flux_ivar`` 0 where ``nobs`` is 0, which leaves those objects out of that band's numbers.
    """
    bad = 0
    for name in EXCLUDED_MASKBITS:
        bad |= bits[name]
    seen = np.zeros(np.shape(maskbits), bool)
    for n in nexp:
        seen |= np.asarray(n) > 0
    return np.asarray(((np.asarray(maskbits) & bad) == 0) & seen)


def match_brick(
    layout: ReleaseLayout,
    brick: str,
    truth: npt.NDArray[np.void],
    *,
    bands: Sequence[str] = DEFAULT_BANDS,
    width: int = BRICK_SIZE_PIX,
    height: int | None = None,
    pixscale: float = BRICK_PIXSCALE,
    radius_arcsec: float = MATCH_RADIUS_ARCSEC,
) -> BrickMatch:
    """Match a brick's tractor catalogue to the truth inside its unique, observed, unmasked area."""
    geom = BrickGeometry.for_brick(brick, width=width, height=height or width, pixscale=pixscale)
    bands = tuple(bands)
    cat = _read_table(layout.tractor(brick))
    maskbits = _read_image(layout.coadd_maskbits(brick))
    nexp = [_read_image(layout.coadd(brick, "nexp", b)) for b in bands]
    depth = {b: _read_image(layout.coadd(brick, "depth", b)) for b in bands}
    if maskbits.shape != (geom.height, geom.width):
        raise InputFileError(
            f"{layout.coadd_maskbits(brick)}: shape {maskbits.shape} is not the brick grid "
            f"{geom.height}x{geom.width} (pass the width the brick was run with)"
        )
    bits = ts.maskbits(bands, "dr10")
    area = validation_area(maskbits, nexp, bits)
    primary_area = area & ((maskbits & bits["NPRIMARY"]) == 0)
    epoch = _mean_epoch(layout, brick)
    ra, dec = propagate_truth(truth, epoch)
    x, y = geom.wcs().radec_to_pixel(ra, dec)
    ix = np.round(x - 1.0).astype(np.int64)
    iy = np.round(y - 1.0).astype(np.int64)
    inside = (ix >= 0) & (ix < geom.width) & (iy >= 0) & (iy < geom.height)
    from lsdr.survey.runbrick.writecat import brick_primary

    keep = inside & brick_primary(ra, dec, geom)
    keep[keep] &= area[iy[keep], ix[keep]]
    sel = np.nonzero(keep)[0]
    t, tra, tdec, tx, ty = truth[sel], ra[sel], dec[sel], ix[sel], iy[sel]

    # Catalogue sources with a reference epoch are at that epoch: compare them there.
    idx = match_radec(tra, tdec, cat["ra"], cat["dec"], radius_arcsec)
    m = idx >= 0
    j = idx[m]
    n = len(sel)
    sep_ra = np.full(n, np.nan)
    sep_dec = np.full(n, np.nan)
    names = cat.dtype.names or ()
    ref_epoch = cat["ref_epoch"][j].astype(np.float64) if "ref_epoch" in names else None
    mra, mdec = tra[m], tdec[m]
    if ref_epoch is not None and np.any(ref_epoch > 0):
        has = ref_epoch > 0
        pra, pdec = propagate_truth(t[m][has], ref_epoch[has])
        mra[has], mdec[has] = pra, pdec
    cosd = np.cos(np.radians(mdec))
    dra = (cat["ra"][j] - mra + 540.0) % 360.0 - 180.0
    sep_ra[m] = dra * cosd * 3600.0
    sep_dec[m] = (cat["dec"][j] - mdec) * 3600.0
    is_ref = np.zeros(n, bool)
    if "ref_cat" in names:
        is_ref[m] = np.char.strip(np.asarray(cat["ref_cat"][j]).astype("S2")) != b""
    cat_type = np.full(n, b"", "S3")
    cat_type[m] = np.char.strip(np.asarray(cat["type"][j]).astype("S3"))
    flux: dict[str, FloatArray] = {}
    flux_ivar: dict[str, FloatArray] = {}
    for b in bands:
        flux[b] = np.full(n, np.nan)
        flux[b][m] = cat[f"flux_{b}"][j]
        flux_ivar[b] = np.full(n, np.nan)
        flux_ivar[b][m] = cat[f"flux_ivar_{b}"][j]
    in_cat = brick_primary(cat["ra"], cat["dec"], geom)
    cx = np.clip(np.round(cat["bx"]).astype(np.int64), 0, geom.width - 1)
    cy = np.clip(np.round(cat["by"]).astype(np.int64), 0, geom.height - 1)
    in_cat &= area[cy, cx]
    return BrickMatch(
        brick=brick,
        bands=bands,
        true_type=np.char.strip(t["type"].astype("S3")),
        true_flux={b: t[f"flux_{b}"].astype(np.float64) for b in bands},
        depth_mag={b: ts.depth_to_mag(depth[b][ty, tx]) for b in bands},
        matched=m,
        sep_ra_arcsec=sep_ra,
        sep_dec_arcsec=sep_dec,
        cat_type=cat_type,
        flux=flux,
        flux_ivar=flux_ivar,
        is_ref=is_ref,
        n_catalog=int(np.sum(in_cat)),
        area_deg2=float(primary_area.sum() * (pixscale / 3600.0) ** 2),
    )


def combine(matches: Sequence[BrickMatch]) -> BrickMatch:
    """Several bricks' matches as one (the bands of the first)."""
    if not matches:
        raise ValueError("no brick matches to combine")
    bands = matches[0].bands

    def cat(name: str) -> Any:
        return np.concatenate([getattr(m, name) for m in matches])

    def catd(name: str) -> dict[str, FloatArray]:
        return {b: np.concatenate([getattr(m, name)[b] for m in matches]) for b in bands}

    return BrickMatch(
        brick="+".join(m.brick for m in matches),
        bands=bands,
        true_type=cat("true_type"),
        true_flux=catd("true_flux"),
        depth_mag=catd("depth_mag"),
        matched=cat("matched"),
        sep_ra_arcsec=cat("sep_ra_arcsec"),
        sep_dec_arcsec=cat("sep_dec_arcsec"),
        cat_type=cat("cat_type"),
        flux=catd("flux"),
        flux_ivar=catd("flux_ivar"),
        is_ref=cat("is_ref"),
        n_catalog=sum(m.n_catalog for m in matches),
        area_deg2=sum(m.area_deg2 for m in matches),
    )


def delta_mag(match: BrickMatch, band: str) -> FloatArray:
    """True magnitude minus the 5σ PSF depth at the object (negative = brighter than depth)."""
    return np.asarray(ts.flux_to_mag(match.true_flux[band]) - match.depth_mag[band])


def completeness_curve(
    match: BrickMatch, band: str, edges: FloatArray | None = None
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Point-source completeness per Δm bin: (bin centres, fraction matched, objects per bin)."""
    if edges is None:
        edges = np.arange(-6.0, 2.0 + 1e-9, MAG_BIN_WIDTH)
    psf = match.true_type == b"PSF"
    dm = delta_mag(match, band)[psf]
    hit = match.matched[psf]
    ok = np.isfinite(dm)
    total, _ = np.histogram(dm[ok], edges)
    found, _ = np.histogram(dm[ok & hit], edges)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(total > 0, found / np.maximum(total, 1), np.nan)
    return 0.5 * (edges[1:] + edges[:-1]), frac, total.astype(np.int64)


def _fraction(mask: BoolArray, sel: BoolArray) -> float:
    n = int(np.sum(sel))
    return float(np.sum(mask & sel) / n) if n else float("nan")


def total_sn(match: BrickMatch, true_flux: bool = False) -> FloatArray:
    """S/N over all bands in quadrature; with ``true_flux``, true fluxes and reported ivars."""
    s = np.zeros(len(match))
    for b in match.bands:
        f = match.true_flux[b] if true_flux else match.flux[b]
        iv = np.nan_to_num(match.flux_ivar[b])
        s += np.clip(f, 0, None) ** 2 * np.clip(iv, 0, None)
    return np.sqrt(s)


def flux_sn(match: BrickMatch, band: str) -> FloatArray:
    """Per-band S/N of each object: true flux × √flux_ivar (NaN where unmatched).

    The true flux (not the measured one) selects the sample, so noise does not scatter faint
    objects into it (Eddington bias).
    """
    return np.asarray(match.true_flux[band] * np.sqrt(np.clip(match.flux_ivar[band], 0, None)))


def compute_metrics(match: BrickMatch, thresholds: Thresholds | None = None) -> ValidationMetrics:
    """All acceptance numbers of (possibly combined) brick matches, with pass/fail per check."""
    th = thresholds or Thresholds()
    psf = match.true_type == b"PSF"
    comp_lim: dict[str, float] = {}
    n_lim: dict[str, int] = {}
    comp_bright: dict[str, float] = {}
    bias: dict[str, float] = {}
    rsig: dict[str, float] = {}
    rsig_mod: dict[str, float] = {}
    nflux: dict[str, int] = {}
    lo, hi = COMPLETENESS_BIN
    for b in match.bands:
        dm = delta_mag(match, b)
        in_bin = psf & (dm >= lo) & (dm < hi)
        comp_lim[b] = _fraction(match.matched, in_bin)
        n_lim[b] = int(np.sum(in_bin))
        comp_bright[b] = _fraction(match.matched, psf & (dm < hi))
        sn = flux_sn(match, b)
        star = psf & match.matched & (np.nan_to_num(sn) > FLUX_SN_MIN)
        nflux[b] = int(np.sum(star))
        ratio = match.flux[b][star] / match.true_flux[b][star]
        bias[b] = float(np.median(ratio) - 1.0) if nflux[b] else float("nan")
        resid = (match.flux[b][star] - match.true_flux[b][star]) * np.sqrt(match.flux_ivar[b][star])
        rsig[b] = robust_sigma(resid)
        moderate = sn[star] <= MODERATE_SN_MAX
        rsig_mod[b] = robust_sigma(resid[moderate])
    sn_all = total_sn(match, true_flux=True)
    bright = match.matched & (sn_all > SHAPE_SN_MIN)
    s_ra = robust_sigma(match.sep_ra_arcsec[bright])
    s_dec = robust_sigma(match.sep_dec_arcsec[bright])
    astro = float(np.sqrt(0.5 * (s_ra**2 + s_dec**2)))
    cat_psf = match.cat_type == b"PSF"
    correct = np.where(psf, cat_psf, ~cat_psf)
    typing = _fraction(correct, bright)
    metrics = ValidationMetrics(
        bricks=tuple(match.brick.split("+")),
        n_truth=len(match),
        n_truth_psf=int(np.sum(psf)),
        n_catalog=match.n_catalog,
        area_deg2=match.area_deg2,
        completeness_limit=comp_lim,
        n_completeness_limit=n_lim,
        completeness_bright=comp_bright,
        flux_bias=bias,
        residual_sigma=rsig,
        residual_sigma_moderate=rsig_mod,
        n_flux_stars=nflux,
        astrometry_arcsec=astro,
        astrometry_ra_arcsec=s_ra,
        astrometry_dec_arcsec=s_dec,
        n_astrometry=int(np.sum(bright)),
        typing_accuracy=typing,
        psf_as_psf=_fraction(cat_psf, bright & psf),
        galaxy_as_galaxy=_fraction(~cat_psf, bright & ~psf),
        n_typing=int(np.sum(bright)),
        typing_accuracy_unforced=_fraction(correct, bright & ~match.is_ref),
        n_typing_unforced=int(np.sum(bright & ~match.is_ref)),
    )
    metrics.residual_sigma_by_sn = {b: residual_sigma_by_sn(match, b) for b in match.bands}
    r0, r1 = th.residual_sigma_range
    for b in match.bands:
        metrics.checks[f"completeness_{b}"] = comp_lim[b] >= th.completeness_min
        metrics.checks[f"flux_bias_{b}"] = abs(bias[b]) < th.flux_bias_max
        metrics.checks[f"residual_sigma_{b}"] = r0 <= rsig[b] <= r1
    metrics.checks["astrometry"] = astro < th.astrometry_max_arcsec
    metrics.checks["typing"] = typing >= th.typing_min
    return metrics


def residual_sigma_by_sn(match: BrickMatch, band: str) -> list[tuple[float, float, float, int]]:
    """(S/N low, S/N high, normalised residual σ, N) of matched stars in each of ``SN_BINS``."""
    sn = np.nan_to_num(flux_sn(match, band))
    star = (match.true_type == b"PSF") & match.matched
    resid = (match.flux[band] - match.true_flux[band]) * np.sqrt(
        np.clip(np.nan_to_num(match.flux_ivar[band]), 0, None)
    )
    out = []
    for lo, hi in SN_BINS:
        sel = star & (sn > lo) & (sn <= hi)
        out.append((lo, hi, robust_sigma(resid[sel]), int(np.sum(sel))))
    return out


def read_truth(layout: ReleaseLayout) -> npt.NDArray[np.void]:
    """The simulated survey's truth catalogue."""
    return _read_table(layout.truth_catalog)


def validate_bricks(
    layout: ReleaseLayout,
    bricks: Sequence[str],
    *,
    bands: Sequence[str] = DEFAULT_BANDS,
    width: int = BRICK_SIZE_PIX,
    thresholds: Thresholds | None = None,
) -> tuple[ValidationMetrics, BrickMatch]:
    """Match each brick's catalogue to the truth and score them together."""
    truth = read_truth(layout)
    matches = [match_brick(layout, b, truth, bands=bands, width=width) for b in bricks]
    combined = combine(matches)
    return compute_metrics(combined, thresholds), combined


def figure_module() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_completeness(match: BrickMatch, path: Path) -> Path:
    """PNG: point-source completeness against magnitude relative to the 5σ PSF depth."""
    plt = figure_module()
    fig, ax = plt.subplots(figsize=(6, 4))
    for b in match.bands:
        x, frac, n = completeness_curve(match, b)
        ok = n >= 5
        ax.plot(x[ok], frac[ok], marker="o", ms=3, label=f"{b} (N={int(n.sum())})")
    ax.axvspan(*COMPLETENESS_BIN, color="0.85", label="acceptance bin")
    ax.axhline(0.9, color="k", ls="--", lw=0.8)
    ax.axvline(0.0, color="k", ls=":", lw=0.8)
    ax.set_xlabel("true mag − 5σ PSF depth")
    ax.set_ylabel("completeness (point sources)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title(f"completeness: {match.brick}", fontsize=9)
    fig.tight_layout()
    return save_png(plt, fig, path)


def save_png(plt: Any, fig: Any, path: Path) -> Path:
    """Write a figure as PNG atomically and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def plot_flux_residuals(match: BrickMatch, path: Path) -> Path:
    """PNG per band: normalised flux residual (flux − true)·√ivar of stars against magnitude."""
    plt = figure_module()
    fig, axes = plt.subplots(len(match.bands), 1, figsize=(6, 2.4 * len(match.bands)), sharex=True)
    axes = np.atleast_1d(axes)
    psf = (match.true_type == b"PSF") & match.matched
    for ax, b in zip(axes, match.bands, strict=True):
        mag = ts.flux_to_mag(match.true_flux[b])
        sel = psf & (match.flux_ivar[b] > 0)
        chi = (match.flux[b] - match.true_flux[b]) * np.sqrt(np.clip(match.flux_ivar[b], 0, None))
        sn = flux_sn(match, b)
        hi = sel & (sn > FLUX_SN_MIN)
        ax.scatter(mag[sel & ~hi], chi[sel & ~hi], s=2, c="0.6", label=f"S/N ≤ {FLUX_SN_MIN:g}")
        ax.scatter(mag[hi], chi[hi], s=3, c="C0", label=f"S/N > {FLUX_SN_MIN:g}")
        for lvl in (-1, 1):
            ax.axhline(lvl, color="k", ls=":", lw=0.8)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_ylim(-6, 6)
        ax.set_ylabel(f"{b}: (f − f_true)·√ivar")
        ax.legend(fontsize=7, loc="lower left")
    axes[-1].set_xlabel("true AB mag")
    fig.suptitle(f"star flux residuals: {match.brick}", fontsize=9)
    fig.tight_layout()
    return save_png(plt, fig, path)


def plot_flux_ratio(match: BrickMatch, path: Path) -> Path:
    """PNG per band: flux / true flux of stars against magnitude (the flux bias)."""
    plt = figure_module()
    fig, axes = plt.subplots(len(match.bands), 1, figsize=(6, 2.2 * len(match.bands)), sharex=True)
    axes = np.atleast_1d(axes)
    psf = (match.true_type == b"PSF") & match.matched
    for ax, b in zip(axes, match.bands, strict=True):
        mag = ts.flux_to_mag(match.true_flux[b])
        ax.scatter(mag[psf], match.flux[b][psf] / match.true_flux[b][psf], s=2, c="C1")
        ax.axhline(1.0, color="k", lw=0.8)
        for lvl in (0.98, 1.02):
            ax.axhline(lvl, color="k", ls=":", lw=0.8)
        ax.set_ylim(0.7, 1.3)
        ax.set_ylabel(f"{b}: f / f_true")
    axes[-1].set_xlabel("true AB mag")
    fig.suptitle(f"star flux ratio: {match.brick}", fontsize=9)
    fig.tight_layout()
    return save_png(plt, fig, path)
