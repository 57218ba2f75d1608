"""PsfEx-format PSF models: fit a pixelised PSF from stars, write and read legacypipe's files.

legacypipe keeps one PSF model per CCD as a one-row table in its "merged PsfEx" layout
(``calib/psfex-single/...-psfex.fits``), and stacks the rows of an exposure into
``calib/psfex/<imgdir>/<base>-psfex.fits``.  A row holds ``psf_mask`` (the polynomial basis
images, shape (n_terms, h, w)), the PsfEx polynomial cards as columns (``poldeg1``,
``polzero1/2``, ``polscal1/2``, ``polname1/2``, ``psf_samp``, ``psfaxis1..3``…) and the CP
metadata legacypipe validates (``expnum``, ``ccdname``, ``plver``, ``plprocid``, ``procdate``,
``imgdsum``, ``legpipev``).  The Tractor's ``PsfExModel`` evaluates the model as
Σ_k dx^j·dy^l·basis_k with dx = (x − polzero1)/polscal1 (PsfEx term order).

The lite engine's model is a circular Moffat profile fitted to bright isolated stars, integrated
over pixels and stored as a constant (degree-0) pixelised model sampled at the native pixel
scale; reading also accepts spatially varying models (any degree) such as real PsfEx output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.fileio import atomic_path
from lsdr.survey.pretractor.calibtable import read_ccd_row, text

FloatArray = npt.NDArray[np.float64]

OVERSAMPLE = 3
"""Sub-pixels per pixel side when integrating the Moffat profile over pixels."""


@dataclass(frozen=True)
class CalibMeta:
    """CP provenance stored in every calib row; legacypipe checks expnum, plver and plprocid."""

    expnum: int
    ccdname: str
    plver: str
    plprocid: str
    procdate: str
    imgdsum: str = "0"
    legpipev: str = "lsdr-lite"


@dataclass(frozen=True)
class PsfModel:
    """A pixelised PSF model: polynomial bases in x, y (PsfEx conventions)."""

    bases: npt.NDArray[np.float32]
    """Basis images, shape (n_terms, h, w); term 0 is the constant term."""
    degree: int = 0
    polzero: tuple[float, float] = (0.0, 0.0)
    polscal: tuple[float, float] = (1.0, 1.0)
    sampling: float = 1.0
    fwhm: float = 0.0
    """FWHM in pixels."""
    moffat_alpha: float = 0.0
    moffat_beta: float = 0.0
    n_loaded: int = 0
    n_accepted: int = 0
    chi2: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """(h, w) of the PSF stamp."""
        return int(self.bases.shape[1]), int(self.bases.shape[2])

    def terms(self, x: float, y: float) -> FloatArray:
        """Polynomial amplitudes of the bases at pixel (x, y), in PsfEx order."""
        n = (self.degree + 1) * (self.degree + 2) // 2
        dx = (x - self.polzero[0]) / self.polscal[0]
        dy = (y - self.polzero[1]) / self.polscal[1]
        out = np.zeros(n)
        for d in range(self.degree + 1):
            for j in range(d + 1):
                k = d - j
                out[j + (self.degree + 1) * k - (k * (k - 1)) // 2] = dx**j * dy**k
        return out

    def at(self, x: float, y: float, normalise: bool = True) -> FloatArray:
        """The PSF image at pixel (x, y) (normalised to unit sum unless told otherwise)."""
        image = np.tensordot(self.terms(x, y), self.bases.astype(np.float64), axes=1)
        if normalise:
            total = image.sum()
            if total != 0:
                image = image / total
        return np.asarray(image, np.float64)


# ----------------------------------------------------------------------------------------------
# Moffat profile


def moffat_alpha(fwhm: float, beta: float) -> float:
    """Moffat core width α (pixels) for a FWHM (pixels) and β."""
    return fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))


def moffat_fwhm(alpha: float, beta: float) -> float:
    """Moffat FWHM (pixels) of core width α and β."""
    return 2.0 * alpha * math.sqrt(2.0 ** (1.0 / beta) - 1.0)


def _subpixel_offsets(half: int) -> FloatArray:
    sub = (np.arange(OVERSAMPLE) + 0.5) / OVERSAMPLE - 0.5
    return np.asarray((np.arange(-half, half + 1)[:, None] + sub[None, :]).ravel(), np.float64)


def moffat_stamp(
    alpha: float, beta: float, half: int, dx: float = 0.0, dy: float = 0.0
) -> FloatArray:
    """Unit-flux Moffat integrated over the pixels of a (2·half+1)² stamp, centre offset (dx, dy).

    The returned stamp is normalised to sum 1 over the stamp (the tractor normalises pixelised
    PSFs the same way), so fluxes fitted with it are total fluxes up to the wing beyond it.
    """
    grid = _subpixel_offsets(half)
    gx = (grid - dx)[None, :]
    gy = (grid - dy)[:, None]
    values = (1.0 + (gx * gx + gy * gy) / (alpha * alpha)) ** (-beta)
    n = 2 * half + 1
    binned = values.reshape(n, OVERSAMPLE, n, OVERSAMPLE).mean(axis=(1, 3))
    return np.asarray(binned / binned.sum(), np.float64)


@dataclass(frozen=True)
class StarFit:
    """A Moffat fit to one star stamp."""

    x: float
    y: float
    flux: float
    alpha: float
    beta: float
    ok: bool


def fit_moffat_star(
    stamp: FloatArray, ivar: FloatArray, x0: float, y0: float, fwhm_guess: float
) -> StarFit:
    """Fit flux, centre, α and β of a Moffat to a sky-subtracted stamp (pixel-integrated).

    ``x0, y0`` are the centre's offsets from the stamp's central pixel; the fit keeps β within
    1.5–10 and the centre within two pixels of the start.
    """
    from scipy.optimize import least_squares

    half = stamp.shape[0] // 2
    sw = np.sqrt(np.maximum(ivar, 0.0)).ravel()
    data = stamp.ravel()
    flux0 = max(float(stamp.sum()), 1e-6)
    beta0 = 3.0
    alpha0 = moffat_alpha(max(fwhm_guess, 0.8), beta0)

    def resid(p: FloatArray) -> FloatArray:
        model = p[0] * moffat_stamp(p[3], p[4], half, p[1], p[2]).ravel()
        return np.asarray((data - model) * sw, np.float64)

    start = np.array([flux0, x0, y0, alpha0, beta0])
    lower = [0.0, x0 - 2.0, y0 - 2.0, 0.2, 1.5]
    upper = [np.inf, x0 + 2.0, y0 + 2.0, 30.0, 10.0]
    start = np.clip(start, np.array(lower) + 1e-9, np.array(upper) - 1e-9)
    try:
        res = least_squares(resid, start, bounds=(lower, upper), x_scale="jac", max_nfev=200)
    except (ValueError, np.linalg.LinAlgError):
        return StarFit(x0, y0, flux0, alpha0, beta0, False)
    f, x, y, a, b = (float(v) for v in res.x)
    ok = bool(res.success) and f > 0 and 1.5 < b < 10.0 and 0.2 < a < 30.0
    return StarFit(x, y, f, a, b, ok)


def psf_from_moffat(
    alpha: float, beta: float, half: int, n_loaded: int = 0, n_accepted: int = 0
) -> PsfModel:
    """A constant pixelised PsfEx-style model of a Moffat profile (unit sum, centred)."""
    stamp = moffat_stamp(alpha, beta, half).astype(np.float32)
    return PsfModel(
        bases=stamp[None, :, :],
        degree=0,
        fwhm=moffat_fwhm(alpha, beta),
        moffat_alpha=alpha,
        moffat_beta=beta,
        n_loaded=n_loaded,
        n_accepted=n_accepted,
    )


def stamp_half_size(fwhm: float) -> int:
    """Half-width of the PSF stamp for a FWHM (pixels): ~6 FWHM, between 7 and 31 pixels."""
    return int(min(max(math.ceil(6.0 * fwhm), 7), 31))


# ----------------------------------------------------------------------------------------------
# Files


def psf_row(model: PsfModel, meta: CalibMeta) -> npt.NDArray[np.void]:
    """The model as one row of legacypipe's merged-PsfEx table."""
    n, h, w = model.bases.shape
    constant = model.degree == 0
    dtype = [
        ("expnum", ">i8"),
        ("ccdname", f"S{max(len(meta.ccdname), 1)}"),
        ("psf_mask", ">f4", (n, h, w)),
        ("psf_samp", ">f8"),
        ("psf_fwhm", ">f8"),
        ("psfnaxis", ">i8"),
        ("psfaxis1", ">i8"),
        ("psfaxis2", ">i8"),
        ("psfaxis3", ">i8"),
        ("polnaxis", ">i8"),
        ("polngrp", ">i8"),
        ("polgrp1", ">i8"),
        ("polgrp2", ">i8"),
        ("polname1", "S7"),
        ("polname2", "S7"),
        ("polzero1", ">f8"),
        ("polzero2", ">f8"),
        ("polscal1", ">f8"),
        ("polscal2", ">f8"),
        ("poldeg1", ">i8"),
        ("loaded", ">i8"),
        ("accepted", ">i8"),
        ("chi2", ">f8"),
        ("moffat_alpha", ">f8"),
        ("moffat_beta", ">f8"),
        ("legpipev", f"S{max(len(meta.legpipev), 1)}"),
        ("plver", f"S{max(len(meta.plver), 1)}"),
        ("plprocid", f"S{max(len(meta.plprocid), 1)}"),
        ("procdate", f"S{max(len(meta.procdate), 1)}"),
        ("imgdsum", f"S{max(len(meta.imgdsum), 1)}"),
    ]
    row = np.zeros(1, dtype)
    values: dict[str, object] = {
        "expnum": meta.expnum,
        "ccdname": meta.ccdname,
        "psf_mask": model.bases,
        "psf_samp": model.sampling,
        "psf_fwhm": model.fwhm,
        "psfnaxis": 3,
        "psfaxis1": w,
        "psfaxis2": h,
        "psfaxis3": n,
        # PsfEx writes POLNAXIS 0 for a constant model; legacypipe then fakes the cards.
        "polnaxis": 0 if constant else 2,
        "polngrp": 0 if constant else 1,
        "polgrp1": 0 if constant else 1,
        "polgrp2": 0 if constant else 1,
        "polname1": "fake" if constant else "X_IMAGE",
        "polname2": "fake" if constant else "Y_IMAGE",
        "polzero1": model.polzero[0],
        "polzero2": model.polzero[1],
        "polscal1": model.polscal[0],
        "polscal2": model.polscal[1],
        "poldeg1": model.degree,
        "loaded": model.n_loaded,
        "accepted": model.n_accepted,
        "chi2": model.chi2,
        "moffat_alpha": model.moffat_alpha,
        "moffat_beta": model.moffat_beta,
        "legpipev": meta.legpipev,
        "plver": meta.plver,
        "plprocid": meta.plprocid,
        "procdate": meta.procdate,
        "imgdsum": meta.imgdsum,
    }
    for key, value in values.items():
        row[key] = value
    return row


def _psf_header(model: PsfModel, meta: CalibMeta) -> list[dict[str, object]]:
    """PsfEx header cards (so the single-file PsfEx reader also works) plus provenance."""
    n, h, w = model.bases.shape
    constant = model.degree == 0
    cards: list[tuple[str, object]] = [
        ("LOADED", model.n_loaded),
        ("ACCEPTED", model.n_accepted),
        ("CHI2", model.chi2),
        ("POLNAXIS", 0 if constant else 2),
        ("POLNGRP", 0 if constant else 1),
    ]
    if not constant:
        cards += [
            ("POLGRP1", 1),
            ("POLNAME1", "X_IMAGE"),
            ("POLZERO1", model.polzero[0]),
            ("POLSCAL1", model.polscal[0]),
            ("POLGRP2", 1),
            ("POLNAME2", "Y_IMAGE"),
            ("POLZERO2", model.polzero[1]),
            ("POLSCAL2", model.polscal[1]),
            ("POLDEG1", model.degree),
        ]
    cards += [
        ("PSF_FWHM", model.fwhm),
        ("PSF_SAMP", model.sampling),
        ("PSFNAXIS", 3),
        ("PSFAXIS1", w),
        ("PSFAXIS2", h),
        ("PSFAXIS3", n),
        ("EXPNUM", meta.expnum),
        ("PLVER", meta.plver),
        ("PLPROCID", meta.plprocid),
        ("PROCDATE", meta.procdate),
        ("IMGDSUM", meta.imgdsum),
        ("LEGPIPEV", meta.legpipev),
    ]
    return [{"name": k, "value": v} for k, v in cards]


def write_psf_table(
    path: Path, rows: npt.NDArray[np.void], header: list[dict[str, object]]
) -> Path:
    """Write PsfEx rows (one per CCD) atomically as a FITS binary table."""
    import fitsio

    primary = [c for c in header if c["name"] in ("EXPNUM", "PLVER", "PLPROCID", "PROCDATE")]
    with atomic_path(path) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as fits:
        fits.write(None, header=primary)
        fits.write(rows, header=header)
    return path


def write_psfex(path: Path, model: PsfModel, meta: CalibMeta) -> Path:
    """Write one CCD's model as legacypipe's per-CCD PsfEx file."""
    return write_psf_table(path, psf_row(model, meta), _psf_header(model, meta))


def model_from_row(row: np.void, path: Path) -> PsfModel:
    """A PsfModel from a row of a merged-format table (padding removed)."""
    names = row.dtype.names or ()
    try:
        degree = int(row["poldeg1"])
        n = (degree + 1) * (degree + 2) // 2
        w, h = int(row["psfaxis1"]), int(row["psfaxis2"])
        bases = np.asarray(row["psf_mask"], np.float32)[:n, :h, :w]
        return PsfModel(
            bases=bases,
            degree=degree,
            polzero=(float(row["polzero1"]), float(row["polzero2"])),
            polscal=(float(row["polscal1"]), float(row["polscal2"])),
            sampling=float(row["psf_samp"]) or 1.0,
            fwhm=float(row["psf_fwhm"]),
            moffat_alpha=float(row["moffat_alpha"]) if "moffat_alpha" in names else 0.0,
            moffat_beta=float(row["moffat_beta"]) if "moffat_beta" in names else 0.0,
            n_loaded=int(row["loaded"]) if "loaded" in names else 0,
            n_accepted=int(row["accepted"]) if "accepted" in names else 0,
            chi2=float(row["chi2"]) if "chi2" in names else 0.0,
        )
    except (KeyError, ValueError) as err:
        raise InputFileError(f"{path}: not a merged PsfEx table ({err})") from err


def as_stored(model: PsfModel, meta: CalibMeta) -> PsfModel:
    """The model as its file holds it (float32 bases), as a later run reads it back.

    The run that fits a PSF uses this, so it measures with the same numbers as every rerun
    that reads the calib back, and their tables come out byte-identical (early cutoff).
    """
    return model_from_row(psf_row(model, meta)[0], Path("<in memory>"))


def read_psfex(path: Path, expnum: int, ccdname: str) -> PsfModel:
    """Read the model of CCD ``ccdname`` of exposure ``expnum`` from a per-CCD or merged file."""
    return model_from_row(read_ccd_row(path, expnum, ccdname, "PsfEx table"), path)


def read_calib_provenance(path: Path) -> list[tuple[int, str, str, str]]:
    """(expnum, ccdname, plver, plprocid) of every row of a calib table."""
    import fitsio

    try:
        rows = np.asarray(
            fitsio.read(str(path), ext=1, columns=["expnum", "ccdname", "plver", "plprocid"])
        )
    except (OSError, ValueError) as err:
        raise InputFileError(f"{path}: cannot read calib table ({err})") from err
    return [
        (int(r["expnum"]), text(r["ccdname"]), text(r["plver"]), text(r["plprocid"])) for r in rows
    ]


# ----------------------------------------------------------------------------------------------
# Norms and moments used by the CCD tables


def psf_norm(psf: FloatArray) -> float:
    """√Σp² of a unit-sum PSF image: the point-source detection norm."""
    p = psf / psf.sum()
    return float(np.sqrt(np.sum(p * p)))


def galaxy_norm(psf: FloatArray, pixscale: float, re_arcsec: float = 0.45) -> float:
    """√Σg² of a unit-flux galaxy seen through the PSF: the galaxy detection norm.

    The galaxy is legacypipe's ``SimpleGalaxy``: a round exponential with r_e = 0.45″, the
    Tractor's "lux" mixture (:mod:`lsdr.survey.core.galaxyprofile`; the exact exponential gave
    norms 1–2.6 % low), convolved with the pixelised PSF in Fourier space and summed over the
    65² pixels around it, as legacypipe's ``galaxy_norm`` does (no renormalisation).
    """
    from lsdr.survey.core.galaxyprofile import exp_transform

    half = 32
    ph, pw = psf.shape
    n = 2 * max(2 * half + 1, ph, pw)
    pad = np.zeros((n, n))
    cy, cx = n // 2 - ph // 2, n // 2 - pw // 2
    pad[cy : cy + ph, cx : cx + pw] = psf / psf.sum()
    k = np.fft.fftfreq(n)
    k2pi = (2.0 * np.pi) ** 2 * (k[None, :] ** 2 + k[:, None] ** 2)
    gal, _ = exp_transform(re_arcsec / pixscale, k2pi)
    conv = np.real(np.fft.ifft2(np.fft.fft2(np.fft.ifftshift(pad)) * gal))
    conv = np.fft.fftshift(conv)
    c = n // 2
    box = conv[c - half : c + half + 1, c - half : c + half + 1]
    return float(np.sqrt(np.sum(box * box)))


def gaussian_psf(fwhm: float, half: int) -> FloatArray:
    """A unit-sum circular Gaussian PSF image (σ = FWHM/2.35), pixel-sampled."""
    sigma = fwhm / 2.35
    g = np.arange(-half, half + 1, dtype=np.float64)
    r2 = g[None, :] ** 2 + g[:, None] ** 2
    img = np.exp(-0.5 * r2 / sigma**2)
    return np.asarray(img / img.sum(), np.float64)


def psf_moments(psf: FloatArray) -> dict[str, float]:
    """Second moments of a PSF image: mx2, my2, mxy, a, b, theta (deg), ell (annotated CCDs)."""
    p = psf / psf.sum()
    ph, pw = p.shape
    px, py = np.meshgrid(np.arange(pw), np.arange(ph))
    cx, cy = float(np.sum(p * px)), float(np.sum(p * py))
    x2 = float(np.sum(p * (px - cx) ** 2))
    y2 = float(np.sum(p * (py - cy) ** 2))
    xy = float(np.sum(p * (px - cx) * (py - cy)))
    theta = abs(math.degrees(math.atan2(2 * xy, x2 - y2) / 2.0)) * (
        math.copysign(1.0, xy) if xy else 0.0
    )
    s = math.sqrt(((x2 - y2) / 2.0) ** 2 + xy**2)
    a = math.sqrt(max((x2 + y2) / 2.0 + s, 0.0))
    b = math.sqrt(max((x2 + y2) / 2.0 - s, 0.0))
    return {
        "psf_mx2": x2,
        "psf_my2": y2,
        "psf_mxy": xy,
        "psf_a": a,
        "psf_b": b,
        "psf_theta": theta,
        "psf_ell": 1.0 - b / a if a > 0 else 0.0,
    }
