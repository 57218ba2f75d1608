"""Per-blob source fitting for the lite runbrick: PSF, REX, EXP and DEV by χ² difference.

Every model is rendered on each tim's own pixel grid with that CCD's own PSF, as a small stamp
computed in Fourier space: the pixelised PSF stamp, times the analytic transform of the galaxy
profile (the Tractor's Gaussian mixtures, :mod:`lsdr.survey.core.galaxyprofile`: a round "lux"
exponential for REX, elliptical exponential or de Vaucouleurs for EXP and DEV), times the phase
of the sub-pixel shift.  Each source is fitted by damped Gauss–Newton (Levenberg–Marquardt) on
position, shape and one flux per band, with the other sources of its blob subtracted: position
and shape derivatives from the same transform.
The model is then chosen with legacypipe's rule (``select_model``): penalised Δχ² (Δχ² − number
of non-flux parameters: PSF 2, REX 3, EXP/DEV 5) must reach 25 or the source is dropped; REX
replaces PSF only when its penalised Δχ² is larger *and* its Δχ² exceeds the PSF's by at least
1 % of the PSF's; EXP or DEV replaces that when better by max(12, 1 % of the PSF's Δχ²).  After
the fit the blob's residuals are searched again (:mod:`lsdr.survey.runbrick.iterative`).  Fluxes
are finally re-measured jointly for all the blob's sources by forced photometry
(:mod:`lsdr.survey.runbrick.photometry`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import fft as sfft

from lsdr.survey.core.galaxyprofile import (
    EXTENT_RE,
    covariance_derivatives,
    exp_transform,
    mixture_transform,
    pixel_covariance,
)
from lsdr.survey.runbrick.detect import Blob, brick_to_tim_coords, tim_psf_stamp
from lsdr.survey.runbrick.options import RunbrickOptions
from lsdr.survey.runbrick.types import BrickGeometry, Source, Tim

FloatArray = npt.NDArray[np.float64]

EXP_B = 1.678347
"""Half-light radius / scale length of an exponential profile."""
NPARAMS = {"PSF": 2, "REX": 3, "EXP": 5, "DEV": 5}
"""Non-flux parameters of each model (legacypipe's penalty)."""
GALAXY_TYPES = ("REX", "EXP", "DEV")
ELLIPTICAL_TYPES = ("EXP", "DEV")
"""Galaxy types lite fits; EXP and DEV have an ellipticity (e1, e2), REX is round."""
DETECTION_CUT = 25.0
"""Penalised Δχ² a source's best model must reach to be kept (legacypipe: 5²)."""
GALAXY_MARGIN = 3.0**2 + (5 - 2)
"""Δχ² by which EXP or DEV must beat PSF/REX (legacypipe: 3² + the extra parameters)."""
GALAXY_TRIAL_DCHISQ = 400.0
"""A source this bright (PSF or REX Δχ²) is tried as EXP and DEV even if REX ≤ PSF + 1."""
REX_FRACTION = 0.01
"""REX must improve Δχ² over PSF by this fraction of the PSF's Δχ² (legacypipe)."""
REX_START = 0.5
"""Starting half-light radius of the REX fit, arcsec."""
LOG_R_RANGE = (math.log(0.02), math.log(15.0))
"""Allowed range of ln r_e (arcsec) while fitting REX."""
FIT_CROP_FWHM = 2.5
"""While fitting position, shape and model type, the PSF is cropped to ±2.5 FWHM (not
renormalised: the model is exact on those pixels).  This makes stamps ~4× smaller; final
fluxes and metrics use the full PSF stamp."""
ANALYTIC_BELOW_FWHM = 3.0
"""Moffat calibs narrower than this (pixels) are drawn analytically; wider PSFs are sampled
well enough for an exact Fourier shift (flux error < 1e-4 at FWHM 3 for half-pixel shifts)."""
MOFFAT_OVERSAMPLE = 3
"""Sub-pixels per side when integrating a Moffat PSF (as ``psfex.moffat_stamp``)."""
FORCED_POINTSOURCE = "forced_pointsource"
"""``Source.extra`` key: the source lies in a BRIGHT or CLUSTER mask and is fit only as PSF."""
E_MAX = 0.95
"""Largest ellipticity |e| a fit may reach (the Tractor's ellipse needs e < 1)."""
MAX_STAMP = 512
"""Largest galaxy stamp side (pixels): a 15″ de Vaucouleurs would otherwise need ~1000."""
FITBITS_KEY = "fitbits"
"""``Source.extra`` key of the source's ``fitbits`` (set by ``fit_blob``)."""
WALK_ARCSEC = 1.0
RUN_ARCSEC = 2.5
"""A source that moved more than these in its fit is a WALKER / RUNNER (legacypipe)."""
GAIA_CATALOGUES = ("G2", "GE", "G3")
"""``ref_cat`` values of Gaia reference stars."""
MAX_ITER = 25
MAX_STEP_ARCSEC = 0.5
"""Largest position step per iteration."""


def _fast_len(n: int) -> int:
    """A small even FFT-friendly size ≥ n."""
    m = int(sfft.next_fast_len(int(n)))
    while m % 2:
        m = int(sfft.next_fast_len(m + 1))
    return m


class TimRenderer:
    """Renders unit-flux PSF / round-exponential stamps on one tim (PSF transforms cached).

    A PSF that lsdr's calibration fitted as a Moffat (constant model with ``moffat_alpha`` and
    ``moffat_beta``) is drawn directly at the sub-pixel position, pixel-integrated exactly as
    the calib stamp was: Fourier-shifting a pixelised PSF is only exact when it is well sampled,
    and the binned demo CCDs have FWHM of 1.5–2 pixels (a 4 % flux bias at half-pixel shifts).
    Other models (real PsfEx files) and PSFs of FWHM ≥ ``ANALYTIC_BELOW_FWHM`` pixels are
    Fourier-shifted (faster, and exact there).
    """

    def __init__(self, tim: Tim, crop_fwhm: float | None = None) -> None:
        self.tim = tim
        psf = tim_psf_stamp(tim)
        model = tim.psf
        self.full_half = psf.shape[0] // 2
        self.moffat: tuple[float, float] | None = None
        self._moffat_norm: float | None = None
        fwhm = tim.psf_fwhm if tim.psf_fwhm > 0 else model.fwhm
        if (
            fwhm < ANALYTIC_BELOW_FWHM
            and model.degree == 0
            and model.moffat_alpha > 0
            and model.moffat_beta > 1
            and model.sampling == 1.0
            and psf.shape[0] == psf.shape[1]
        ):
            self.moffat = (float(model.moffat_alpha), float(model.moffat_beta))
        if crop_fwhm is not None:
            fwhm = tim.psf_fwhm if tim.psf_fwhm > 0 else tim.psf.fwhm
            half = max(math.ceil(crop_fwhm * fwhm), 5) if fwhm > 0 else psf.shape[0] // 2
            cy, cx = psf.shape[0] // 2, psf.shape[1] // 2
            psf = psf[max(cy - half, 0) : cy + half + 1, max(cx - half, 0) : cx + half + 1]
        self.psf = psf
        self.pixscale = tim.wcs.pixscale
        self._cache: dict[int, _Transform] = {}

    def stamp_size(self, r_e: float, kind: str = "REX") -> int:
        """Stamp side for half-light radius r_e (″) and galaxy type, at most ``MAX_STAMP``.

        The PSF plus the profile's extent each side (8 scale lengths of an exponential).
        """
        ph = max(self.psf.shape)
        h = EXTENT_RE.get(kind, EXTENT_RE["EXP"]) * r_e / self.pixscale
        return min(_fast_len(ph + 2 * math.ceil(h) + 2), max(MAX_STAMP, _fast_len(ph + 2)))

    def _transform(self, n: int) -> _Transform:
        if n not in self._cache:
            ph, pw = self.psf.shape
            pad = np.zeros((n, n))
            cy, cx = n // 2 - ph // 2, n // 2 - pw // 2
            sy0, sx0 = max(-cy, 0), max(-cx, 0)
            sy1, sx1 = min(ph, n - cy), min(pw, n - cx)
            pad[cy + sy0 : cy + sy1, cx + sx0 : cx + sx1] = self.psf[sy0:sy1, sx0:sx1]
            ky = sfft.fftfreq(n)
            kx = sfft.rfftfreq(n)
            k2 = kx[None, :] ** 2 + ky[:, None] ** 2
            self._cache[n] = _Transform(sfft.rfft2(pad), kx, ky, (2.0 * np.pi) ** 2 * k2)
        return self._cache[n]

    def render(
        self,
        x: float,
        y: float,
        r_e: float,
        n: int,
        derivs: bool = False,
        shape: tuple[str, FloatArray] | None = None,
        dshape: tuple[FloatArray, ...] = (),
    ) -> tuple[int, int, FloatArray]:
        """Unit-flux model centred at 0-based cut-out pixel (x, y), half-light radius r_e (″).

        Returns the stamp's origin (ox, oy) in cut-out pixels and an array of shape (1, n, n)
        holding the model or, with ``derivs``, (4, n, n): model, ∂/∂x, ∂/∂y, ∂/∂ln r_e
        (derivatives with respect to the source's position and log radius).  With ``shape`` =
        (type, pixel covariance) the galaxy is that type's elliptical mixture (``r_e`` is then
        unused and the ∂/∂ln r_e plane is zero); with ``derivs`` and ``dshape`` (∂C/∂p for
        each shape parameter p) the derivatives with respect to those parameters follow, as
        planes 4, 5, ….
        """
        t = self._transform(n)
        ix, iy = round(x), round(y)
        fx, fy = x - ix, y - iy
        prof_shape: FloatArray | None = None
        dprofs: list[FloatArray] = []
        if shape is not None:
            prof_shape, dprofs = mixture_transform(
                shape[0], shape[1], t.kx, t.ky, dshape if derivs else ()
            )
        if self.moffat is not None:
            return (
                ix - n // 2,
                iy - n // 2,
                self._render_moffat(t, n, fx, fy, r_e, derivs, prof_shape, dprofs),
            )
        phase_x = np.exp(-2j * np.pi * t.kx * fx)
        phase_y = np.exp(-2j * np.pi * t.ky * fy)
        ft = t.psf_ft * phase_y[:, None] * phase_x[None, :]
        dprof: FloatArray | None = None
        point = ft
        if prof_shape is not None:
            ft = ft * prof_shape
        elif r_e > 0:
            prof, dprof = exp_transform(r_e / self.pixscale, t.k2pi, derivs)
            ft = ft * prof
        if derivs:
            stack = np.empty((4 + len(dprofs), *ft.shape), np.complex128)
            stack[0] = ft
            stack[1] = ft * (-2j * np.pi * t.kx)[None, :]
            stack[2] = ft * (-2j * np.pi * t.ky)[:, None]
            if dprof is not None:
                stack[3] = point * dprof
            else:
                stack[3] = 0.0
            for j, dp in enumerate(dprofs):
                stack[4 + j] = point * dp
        else:
            stack = ft[None]
        out = np.asarray(sfft.irfft2(stack, s=(n, n), axes=(-2, -1)), np.float64)
        return ix - n // 2, iy - n // 2, out

    def _moffat_planes(self, n: int, fx: float, fy: float, derivs: bool) -> FloatArray:
        """The calib's Moffat at offset (fx, fy) on n×n, cropped like ``self.psf``.

        With ``derivs``, its analytic derivatives with respect to the source position follow.
        Pixel integration and normalisation are those of ``psfex.moffat_stamp`` (3×3
        sub-pixels, unit sum over the calib's stamp): at zero offset this is the calib stamp.
        """
        assert self.moffat is not None
        alpha, beta = self.moffat
        half = self.psf.shape[0] // 2
        if self._moffat_norm is None:
            self._moffat_norm = float(
                _moffat_binned(alpha, beta, self.full_half, 0.0, 0.0)[0].sum()
            )
        planes = _moffat_binned(alpha, beta, half, fx, fy, derivs) / self._moffat_norm
        out = np.zeros((len(planes), n, n))
        k = n // 2 - half
        k0 = max(-k, 0)
        k1 = min(2 * half + 1, n - k)
        out[:, k + k0 : k + k1, k + k0 : k + k1] = planes[:, k0:k1, k0:k1]
        return out

    def _render_moffat(
        self,
        t: _Transform,
        n: int,
        fx: float,
        fy: float,
        r_e: float,
        derivs: bool,
        prof_shape: FloatArray | None = None,
        dprofs: Sequence[FloatArray] = (),
    ) -> FloatArray:
        """Model (and derivatives) from the analytic Moffat, convolved with the galaxy if any."""
        planes = self._moffat_planes(n, fx, fy, derivs)
        if prof_shape is not None:
            point = sfft.rfft2(planes, axes=(-2, -1))
            fts = point * prof_shape
            if derivs:
                extra = [np.zeros_like(point[0])] + [point[0] * dp for dp in dprofs]
                fts = np.concatenate([fts, np.stack(extra)])
            return np.asarray(sfft.irfft2(fts, s=(n, n), axes=(-2, -1)), np.float64)
        if r_e <= 0:
            if derivs:
                return np.concatenate([planes, np.zeros((1, n, n))])
            return planes
        prof, dprof = exp_transform(r_e / self.pixscale, t.k2pi, derivs)
        point = sfft.rfft2(planes, axes=(-2, -1))
        fts = point * prof
        if dprof is not None:
            fts = np.concatenate([fts, (point[0] * dprof)[None]])
        return np.asarray(sfft.irfft2(fts, s=(n, n), axes=(-2, -1)), np.float64)


@dataclass(frozen=True)
class _Transform:
    """Cached Fourier-space quantities of one stamp size."""

    psf_ft: npt.NDArray[np.complex128]
    kx: FloatArray
    ky: FloatArray
    k2pi: FloatArray
    """(2π k)² on the rfft grid."""


def _moffat_binned(
    alpha: float, beta: float, half: int, fx: float, fy: float, derivs: bool = False
) -> FloatArray:
    """Unnormalised pixel-integrated Moffat on a (2·half+1)² stamp centred at offset (fx, fy).

    Returns shape (1, n, n), or (3, n, n) with ∂/∂fx and ∂/∂fy (analytic) when ``derivs``.
    """
    sub = (np.arange(MOFFAT_OVERSAMPLE) + 0.5) / MOFFAT_OVERSAMPLE - 0.5
    grid = (np.arange(-half, half + 1)[:, None] + sub[None, :]).ravel()
    gx = (grid - fx)[None, :]
    gy = (grid - fy)[:, None]
    base = 1.0 + (gx * gx + gy * gy) / (alpha * alpha)
    values = base ** (-beta)
    planes = [values]
    if derivs:
        common = 2.0 * beta / (alpha * alpha) * values / base
        planes += [common * gx, common * gy]
    n = 2 * half + 1
    m = MOFFAT_OVERSAMPLE
    stacked = np.stack(planes).reshape(len(planes), n, m, n, m).mean(axis=(2, 4))
    return np.asarray(stacked, np.float64)


def clip_box(
    shape: tuple[int, int], ox: int, oy: int, n: int
) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
    """(destination slices, stamp slices) of an n×n stamp at (ox, oy) clipped to ``shape``."""
    h, w = shape
    x0, y0 = max(ox, 0), max(oy, 0)
    x1, y1 = min(ox + n, w), min(oy + n, h)
    if x1 <= x0 or y1 <= y0:
        return None
    return (slice(y0, y1), slice(x0, x1)), (slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox))


@dataclass
class TimView:
    """One tim's pixels around a blob: data, weights (0 outside the blob), model of its sources."""

    tim: Tim
    renderer: TimRenderer
    """Full-PSF renderer (fluxes, metrics, model images)."""
    fit_renderer: TimRenderer
    """Renderer with the PSF cropped to its core (``FIT_CROP_FWHM``), for model fitting."""
    oy: int
    ox: int
    """Offset of the view in cut-out pixels."""
    data: FloatArray
    ivar: FloatArray
    """Tim invvar, zeroed outside the blob."""
    masked: npt.NDArray[np.bool_]
    """Pixels the tim itself masks (invvar 0)."""
    model: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        """Start with an empty model."""
        self.model = np.zeros_like(self.data)

    @property
    def shape(self) -> tuple[int, int]:
        """(h, w) of the view."""
        return int(self.data.shape[0]), int(self.data.shape[1])

    def position(self, ra: float, dec: float) -> tuple[float, float]:
        """0-based view pixel coordinates of a sky position."""
        x, y = self.tim.wcs.radec_to_pixel(ra, dec)
        return float(x) - 1.0 - self.tim.x0 - self.ox, float(y) - 1.0 - self.tim.y0 - self.oy

    def jacobian(self, ra: float, dec: float) -> FloatArray:
        """d(x, y)/d(ξ, η): view pixels per arcsec of east / north offset at a sky position."""
        step = 1.0 / 3600.0
        cosd = math.cos(math.radians(dec))
        x0, y0 = self.position(ra, dec)
        xe, ye = self.position(ra + step / cosd, dec)
        xn, yn = self.position(ra, dec + step)
        return np.array([[xe - x0, xn - x0], [ye - y0, yn - y0]])


def full_view(tim: Tim) -> TimView:
    """A view of a whole tim (no blob restriction)."""
    ivar = tim.invvar.astype(np.float64)
    return TimView(
        tim=tim,
        renderer=TimRenderer(tim),
        fit_renderer=TimRenderer(tim, FIT_CROP_FWHM),
        oy=0,
        ox=0,
        data=tim.image.astype(np.float64),
        ivar=ivar,
        masked=ivar <= 0,
    )


def blob_views(
    blob: Blob,
    tims: Sequence[Tim],
    geom: BrickGeometry,
    renderers: dict[int, tuple[TimRenderer, TimRenderer]] | None,
) -> list[TimView]:
    """The pixels of each tim that fall in the blob (others get zero weight)."""
    brick_wcs = geom.wcs()
    views: list[TimView] = []
    for itim, tim in enumerate(tims):
        bx = np.array([blob.x0 - 0.5, blob.x1 - 0.5, blob.x0 - 0.5, blob.x1 - 0.5], np.float64)
        by = np.array([blob.y0 - 0.5, blob.y0 - 0.5, blob.y1 - 0.5, blob.y1 - 0.5], np.float64)
        tx, ty = brick_to_tim_coords(tim, brick_wcs, bx, by)
        h, w = tim.shape
        x0 = max(math.floor(tx.min()), 0)
        x1 = min(math.ceil(tx.max()) + 1, w)
        y0 = max(math.floor(ty.min()), 0)
        y1 = min(math.ceil(ty.max()) + 1, h)
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        ra, dec = tim.wcs.pixel_to_radec(xx + 1.0 + tim.x0, yy + 1.0 + tim.y0)
        pbx, pby = brick_wcs.radec_to_pixel(ra, dec)
        ibx = np.rint(pbx - 1.0).astype(np.int64) - blob.x0
        iby = np.rint(pby - 1.0).astype(np.int64) - blob.y0
        bh, bw = blob.mask.shape
        inside = (ibx >= 0) & (ibx < bw) & (iby >= 0) & (iby < bh)
        inblob = np.zeros(inside.shape, bool)
        inblob[inside] = blob.mask[iby[inside], ibx[inside]]
        if not inblob.any():
            continue
        tivar = tim.invvar[y0:y1, x0:x1].astype(np.float64)
        if not np.any(tivar[inblob] > 0):
            continue
        pair = renderers.get(itim) if renderers is not None else None
        if pair is None:
            pair = (TimRenderer(tim), TimRenderer(tim, FIT_CROP_FWHM))
            if renderers is not None:
                renderers[itim] = pair
        views.append(
            TimView(
                tim=tim,
                renderer=pair[0],
                fit_renderer=pair[1],
                oy=y0,
                ox=x0,
                data=tim.image[y0:y1, x0:x1].astype(np.float64),
                ivar=np.where(inblob, tivar, 0.0),
                masked=tivar <= 0,
            )
        )
    return views


@dataclass
class Stamp:
    """A source's unit-flux model on one view: origin, clipped slices and pixels."""

    dst: tuple[slice, slice]
    pix: FloatArray


def render_unit(view: TimView, src: Source, fitting: bool = False) -> Stamp | None:
    """The source's current unit-flux model on a view, clipped to it (None when off the view).

    With ``fitting`` the cropped-PSF renderer is used (the model the fit compares with).
    """
    x, y = view.position(src.ra, src.dec)
    r_e = src.shape_r if src.type in GALAXY_TYPES else 0.0
    renderer = view.fit_renderer if fitting else view.renderer
    n = renderer.stamp_size(r_e, src.type)
    shape = None
    if src.type in ELLIPTICAL_TYPES and r_e > 0:
        cov = pixel_covariance(r_e, src.shape_e1, src.shape_e2, view.jacobian(src.ra, src.dec))
        shape = (src.type, cov)
    ox, oy, comps = renderer.render(x, y, r_e, n, shape=shape)
    model = comps[0]
    box = clip_box(view.shape, ox, oy, n)
    if box is None:
        return None
    dst, sub = box
    return Stamp(dst=dst, pix=model[sub])


@dataclass
class _Fit:
    """Outcome of fitting one model to one source."""

    ok: bool
    ra: float
    dec: float
    r_e: float
    flux: dict[str, float]
    dchisq: float
    hessian: FloatArray
    e1: float = 0.0
    e2: float = 0.0


def _fit_one(
    src: Source, model: str, views: Sequence[TimView], bands: Sequence[str], fit_position: bool
) -> _Fit:
    """Levenberg–Marquardt fit of one source (others held fixed in ``view.model``)."""
    ra0, dec0 = src.ra, src.dec
    cosd = math.cos(math.radians(dec0))
    use = [v for v in views if v.tim.band in bands]
    band_index = {b: i for i, b in enumerate(bands)}
    nb = len(bands)
    npos = 2 if fit_position else 0
    elliptical = model in ELLIPTICAL_TYPES
    nshape = 3 if elliptical else 1 if model == "REX" else 0
    nnl = npos + nshape
    jac = [v.jacobian(ra0, dec0) for v in use]
    base = [v.position(ra0, dec0) for v in use]
    # The others' model: the view's total model minus this source's stored stamp.
    own = src.extra.get("_stamps", {})
    assert isinstance(own, dict)
    resid_others: list[FloatArray] = []
    for v in use:
        r = v.data - v.model
        st = own.get(id(v))
        if st is not None:
            r = r.copy()
            r[st.dst] += st.pix * old_flux(src, v)
        resid_others.append(r)

    r_start = src.shape_r if (src.type in GALAXY_TYPES and src.shape_r > 0) else REX_START
    params = np.zeros(nnl + nb)
    if nshape:
        params[npos] = math.log(r_start)
    if elliptical and src.type in ELLIPTICAL_TYPES:
        params[npos + 1], params[npos + 2] = src.shape_e1, src.shape_e2
    for b in bands:
        params[nnl + band_index[b]] = max(_flux_of(src, b), 0.0)

    def evaluate(p: FloatArray, derivs: bool) -> tuple[float, FloatArray, FloatArray]:
        """Δχ² vs no source, and (with derivs) the Hessian and gradient of χ²/2."""
        dxi, deta = (p[0], p[1]) if npos else (0.0, 0.0)
        r_e = math.exp(p[npos]) if nshape else 0.0
        e1, e2 = (p[npos + 1], p[npos + 2]) if elliptical else (0.0, 0.0)
        npar = nnl + nb
        hess = np.zeros((npar, npar))
        grad = np.zeros(npar)
        dchisq = 0.0
        for k, v in enumerate(use):
            J = jac[k]
            x = base[k][0] + J[0, 0] * dxi + J[0, 1] * deta
            y = base[k][1] + J[1, 0] * dxi + J[1, 1] * deta
            n = v.fit_renderer.stamp_size(r_e, model)
            shape = (model, pixel_covariance(r_e, e1, e2, J)) if elliptical else None
            dshape = covariance_derivatives(r_e, e1, e2, J) if elliptical and derivs else ()
            ox, oy, comps = v.fit_renderer.render(
                x, y, r_e, n, derivs=derivs, shape=shape, dshape=dshape
            )
            box = clip_box(v.shape, ox, oy, n)
            if box is None:
                continue
            dst, sub = box
            w = v.ivar[dst]
            if not np.any(w > 0):
                continue
            ib = band_index[v.tim.band]
            f = p[nnl + ib]
            unit = comps[0][sub]
            r = resid_others[k][dst]
            m = f * unit
            dchisq += float(np.sum(w * (2.0 * r * m - m * m)))
            if not derivs:
                continue
            cols: list[FloatArray] = []
            idx: list[int] = []
            if npos:
                dmx, dmy = comps[1][sub], comps[2][sub]
                cols.append(f * (dmx * J[0, 0] + dmy * J[1, 0]))
                cols.append(f * (dmx * J[0, 1] + dmy * J[1, 1]))
                idx += [0, 1]
            if elliptical:
                for j in range(3):
                    cols.append(f * comps[4 + j][sub])
                    idx.append(npos + j)
            elif nshape:
                cols.append(f * comps[3][sub])
                idx.append(npos)
            cols.append(unit)
            idx.append(nnl + ib)
            a = np.stack([c.ravel() for c in cols])
            wr = (w * (r - m)).ravel()
            wa = a * w.ravel()
            sub_h = wa @ a.T
            sub_g = a @ wr
            ii = np.array(idx)
            hess[np.ix_(ii, ii)] += sub_h
            grad[ii] += sub_g
        return dchisq, hess, grad

    lam = 1e-3
    dchisq, hess, grad = evaluate(params, True)
    for _ in range(MAX_ITER):
        diag = np.diag(hess).copy()
        diag[diag <= 0] = 1.0
        try:
            step = np.linalg.solve(hess + lam * np.diag(diag), grad)
        except np.linalg.LinAlgError:
            break
        if npos:
            norm = math.hypot(step[0], step[1])
            if norm > MAX_STEP_ARCSEC:
                step[:npos] *= MAX_STEP_ARCSEC / norm
        trial = params + step
        if nshape:
            trial[npos] = min(max(trial[npos], LOG_R_RANGE[0]), LOG_R_RANGE[1])
        if elliptical:
            e = math.hypot(trial[npos + 1], trial[npos + 2])
            if e > E_MAX:
                trial[npos + 1 : npos + 3] *= E_MAX / e
        new_dchisq, new_hess, new_grad = evaluate(trial, True)
        if new_dchisq >= dchisq - 1e-9:
            params = trial
            gain = new_dchisq - dchisq
            dchisq, hess, grad = new_dchisq, new_hess, new_grad
            lam = max(lam * 0.3, 1e-6)
            small_pos = not npos or math.hypot(step[0], step[1]) < 1e-3
            small_shape = not nshape or float(np.max(np.abs(step[npos:nnl]))) < 1e-3
            if gain < 1e-2 and small_pos and small_shape:
                break
        else:
            lam *= 10.0
            if lam > 1e6:
                break
    dxi, deta = (params[0], params[1]) if npos else (0.0, 0.0)
    ra = ra0 + dxi / 3600.0 / cosd
    dec = dec0 + deta / 3600.0
    r_e = math.exp(params[npos]) if nshape else 0.0
    e1, e2 = (float(params[npos + 1]), float(params[npos + 2])) if elliptical else (0.0, 0.0)
    flux = {b: float(params[nnl + band_index[b]]) for b in bands}
    ok = bool(np.isfinite(dchisq)) and bool(np.all(np.isfinite(params)))
    return _Fit(
        ok=ok, ra=ra, dec=dec, r_e=r_e, flux=flux, dchisq=dchisq, hessian=hess, e1=e1, e2=e2
    )


def _flux_of(src: Source, band: str) -> float:
    value = src.flux.get(band, 0.0)
    return float(value) if math.isfinite(value) else 0.0


def _update_stamps(src: Source, views: Sequence[TimView]) -> None:
    """Replace the source's stamps in the views' total models by its current model."""
    stamps = src.extra.setdefault("_stamps", {})
    assert isinstance(stamps, dict)
    for v in views:
        old = stamps.pop(id(v), None)
        if old is not None:
            v.model[old.dst] -= old.pix * old_flux(src, v)
        st = render_unit(v, src, fitting=True)
        if st is None:
            continue
        f = _flux_of(src, v.tim.band)
        v.model[st.dst] += st.pix * f
        stamps[id(v)] = st
        st_fluxes = src.extra.setdefault("_stamp_flux", {})
        assert isinstance(st_fluxes, dict)
        st_fluxes[id(v)] = f


def old_flux(src: Source, view: TimView) -> float:
    """Flux the source's stored stamp on a view was added with."""
    fluxes = src.extra.get("_stamp_flux", {})
    assert isinstance(fluxes, dict)
    return float(fluxes.get(id(view), 0.0))


def select_model(dchisq: dict[str, float]) -> str:
    """legacypipe's ``_select_model`` over PSF, REX, EXP and DEV Δχ² ("" = drop the source).

    The best penalised Δχ² (Δχ² − non-flux parameters) must reach 25; PSF against REX as
    before; then EXP or DEV replaces that choice only when it improves Δχ² by more than
    max(``GALAXY_MARGIN``, 1 % of the PSF's Δχ²), EXP winning ties.
    """
    pen = {m: d - NPARAMS[m] for m, d in dchisq.items()}
    if max([*pen.values(), -1.0]) < DETECTION_CUT:
        return ""
    keep = ""
    psf, rex = dchisq.get("PSF"), dchisq.get("REX")
    galaxies = [m for m in ELLIPTICAL_TYPES if m in dchisq]
    if psf is not None and rex is None and not galaxies:
        return "PSF"
    if psf is not None and pen["PSF"] >= DETECTION_CUT:
        keep = "PSF"
    if psf is not None and pen["PSF"] >= pen.get("REX", -NPARAMS["REX"]):
        keep = "PSF"
    elif (
        rex is not None
        and pen["REX"] > pen.get("PSF", -NPARAMS["PSF"])
        and not (psf is not None and psf > 0 and (rex - psf) < REX_FRACTION * psf)
    ):
        keep = "REX"
    if not galaxies:
        return keep
    cut = max(GALAXY_MARGIN, REX_FRACTION * (psf or 0.0))
    base = dchisq.get(keep, 0.0) if keep else 0.0
    expdiff = dchisq.get("EXP", 0.0) - base
    devdiff = dchisq.get("DEV", 0.0) - base
    if "EXP" in dchisq and expdiff > cut and expdiff >= devdiff:
        return "EXP"
    if "DEV" in dchisq and devdiff > max(cut, expdiff if "EXP" in dchisq else -math.inf):
        return "DEV"
    return keep


def _trial_source(start: _Fit, src: Source, r_e: float) -> Source:
    """A round galaxy to start the next model's fit from: a previous fit's position and fluxes."""
    trial = Source(ra=start.ra, dec=start.dec, type="REX", flux=dict(start.flux))
    trial.extra = src.extra
    trial.shape_r = r_e
    return trial


def _select_models(
    srcs: Sequence[Source], views: Sequence[TimView], bands: Sequence[str]
) -> list[bool]:
    """Fit each source brightest first (others held fixed) and choose its model; kept or not.

    Every source must already have its stamp in the views' models (``_update_stamps``).
    """
    order = sorted(
        range(len(srcs)), key=lambda i: (-sum(max(v, 0.0) for v in srcs[i].flux.values()), i)
    )
    keep: list[bool] = [True] * len(srcs)
    for i in order:
        s = srcs[i]
        is_ref = bool(s.ref_cat)
        forced = bool(s.extra.get(FORCED_POINTSOURCE))
        fits: dict[str, _Fit] = {}
        fits["PSF"] = _fit_one(s, "PSF", views, bands, fit_position=True)
        if not is_ref and not forced and fits["PSF"].ok:
            trial = _trial_source(fits["PSF"], s, REX_START)
            rex = _fit_one(trial, "REX", views, bands, fit_position=True)
            if rex.ok:
                fits["REX"] = rex
        if "REX" in fits:
            chi_psf, chi_rex = fits["PSF"].dchisq, fits["REX"].dchisq
            if chi_rex > chi_psf + 1.0 or max(chi_psf, chi_rex) > GALAXY_TRIAL_DCHISQ:
                start = fits["REX"]
                for model in ("DEV", "EXP"):
                    trial = _trial_source(start, s, max(start.r_e, REX_START / 4))
                    gal = _fit_one(trial, model, views, bands, fit_position=True)
                    if gal.ok:
                        fits[model] = gal
        dchisq = {m: f.dchisq for m, f in fits.items() if f.ok}
        choice = "PSF" if is_ref else select_model(dchisq)
        s.dchisq = tuple(dchisq.get(m, 0.0) for m in ("PSF", "REX", "DEV", "EXP", "SER"))
        if not choice:
            keep[i] = False
            s.flux = {b: 0.0 for b in bands}
            _update_stamps(s, views)
            continue
        best = fits[choice]
        s.type = choice
        s.ra, s.dec = best.ra, best.dec
        s.shape_r = best.r_e if choice in GALAXY_TYPES else 0.0
        s.shape_e1, s.shape_e2 = best.e1, best.e2
        s.flux = dict(best.flux)
        _set_ivars(s, best, choice)
        _update_stamps(s, views)
    return keep


def _iterative(
    blob: Blob,
    kept: Sequence[Source],
    views: Sequence[TimView],
    geom: BrickGeometry,
    bands: Sequence[str],
    start_xy: Sequence[tuple[float, float]],
    refmap: npt.NDArray[np.integer[Any]] | None,
) -> list[Source]:
    """The blob's iterative sources: peaks on the residuals of its full (uncropped) models."""
    from lsdr.survey.runbrick.iterative import iterative_sources

    models: list[FloatArray] = []
    for v in views:
        model = np.zeros_like(v.data)
        for s in kept:
            f = _flux_of(s, v.tim.band)
            st = render_unit(v, s) if f != 0.0 else None
            if st is not None:
                model[st.dst] += st.pix * f
        models.append(model)
    return iterative_sources(blob, views, models, geom, bands, start_xy, refmap=refmap)


def fit_blob(
    blob: Blob,
    sources: Sequence[Source],
    tims: Sequence[Tim],
    geom: BrickGeometry,
    bands: Sequence[str],
    *,
    renderers: dict[int, tuple[TimRenderer, TimRenderer]] | None = None,
    iterative: bool = True,
    refmap: npt.NDArray[np.integer[Any]] | None = None,
) -> list[Source]:
    """Fit a blob's sources on the individual tims; returns the kept sources, fully measured.

    ``sources`` are the blob's own sources (``[all_sources[i] for i in blob.sources]``); they
    are updated in place (position, type, shape, fluxes, ivars, dchisq and the §6 metrics) and
    the ones whose best model fails the detection cut are left out of the result.  Reference
    sources (``ref_cat`` set) are always kept and always PSF; sources marked
    ``extra[FORCED_POINTSOURCE]`` (in a BRIGHT or CLUSTER mask) are only tried as PSF.  With
    ``iterative`` the residuals are searched again once the sources are fitted (legacypipe's
    iterative detection, :mod:`iterative`; no new peak where ``refmap`` is set) and the new
    sources fitted with the first ones fixed.
    """
    from lsdr.survey.runbrick.photometry import measure

    views = blob_views(blob, tims, geom, renderers)
    srcs = list(sources)
    if not views or not srcs:
        kept = [s for s in srcs if s.ref_cat]
        for s in srcs:
            s.blob = blob.blob_id
        for s in kept:
            s.type = "PSF"
            for b in bands:
                s.flux[b], s.flux_ivar[b] = 0.0, 0.0
                s.nobs[b] = 0
        return kept
    for s in srcs:
        s.blob = blob.blob_id
        if s.type not in ("PSF", *GALAXY_TYPES):
            s.type = "PSF"
    # Joint linear fluxes at the detected positions as the starting point.
    measure(srcs, views, bands, metrics=False)
    for s in srcs:
        _update_stamps(s, views)
    start_xy = [(s.bx, s.by) for s in srcs]
    keep = _select_models(srcs, views, bands)
    kept = [s for s, k in zip(srcs, keep, strict=True) if k]
    if iterative and kept:
        new = _iterative(blob, kept, views, geom, bands, start_xy, refmap)
        start_xy += [(s.bx, s.by) for s in new]
        for s in new:
            s.blob = blob.blob_id
            _update_stamps(s, views)
        kept += [s for s, k in zip(new, _select_models(new, views, bands), strict=True) if k]
        srcs += new
    brick_wcs = geom.wcs()
    starts = {id(s): xy for s, xy in zip(srcs, start_xy, strict=True)}
    for s in kept:
        bx, by = brick_wcs.radec_to_pixel(s.ra, s.dec)
        s.bx, s.by = float(bx) - 1.0, float(by) - 1.0
        s.extra[FITBITS_KEY] = fitbits(s, starts[id(s)], geom.pixscale)
    measure(kept, views, bands, metrics=True)
    for s in srcs:
        s.extra.pop("_stamps", None)
        s.extra.pop("_stamp_flux", None)
    return kept


def fitbits(src: Source, start: tuple[float, float], pixscale: float) -> int:
    """legacypipe's ``fitbits`` of a fitted source: how it was fit and what it is.

    FORCED_POINTSOURCE (in a BRIGHT/CLUSTER mask), ITERATIVE, WALKER / RUNNER (moved more than
    1″ / 2.5″ from where it started), GAIA, TYCHO2, and BRIGHT / MEDIUM for reference stars.
    """
    from lsdr.survey.runbrick.iterative import ITERATIVE
    from lsdr.survey.runbrick.tractorschema import FITBITS

    bits = 0
    if src.extra.get(FORCED_POINTSOURCE):
        bits |= FITBITS["FORCED_POINTSOURCE"]
    if src.extra.get(ITERATIVE):
        bits |= FITBITS["ITERATIVE"]
    moved = math.hypot(src.bx - start[0], src.by - start[1]) * pixscale
    if moved > WALK_ARCSEC:
        bits |= FITBITS["WALKER"]
    if moved > RUN_ARCSEC:
        bits |= FITBITS["RUNNER"]
    if src.ref_cat in GAIA_CATALOGUES:
        bits |= FITBITS["GAIA"]
    if src.ref_cat == "T2":
        bits |= FITBITS["TYCHO2"]
    if src.extra.get("isbright"):
        bits |= FITBITS["BRIGHT"]
    if src.extra.get("ismedium"):
        bits |= FITBITS["MEDIUM"]
    return bits


def _set_ivars(src: Source, fit: _Fit, model: str) -> None:
    """Position and radius inverse variances from the diagonal of the fit's Fisher matrix."""
    h = fit.hessian
    cosd = math.cos(math.radians(src.dec))
    src.ra_ivar = float(max(h[0, 0], 0.0) * (3600.0 * cosd) ** 2)
    src.dec_ivar = float(max(h[1, 1], 0.0) * 3600.0**2)
    src.shape_e1_ivar = src.shape_e2_ivar = 0.0
    if model in GALAXY_TYPES and fit.r_e > 0:
        src.shape_r_ivar = float(max(h[2, 2], 0.0) / fit.r_e**2)
        src.sersic = 4.0 if model == "DEV" else 1.0
        if model in ELLIPTICAL_TYPES:
            src.shape_e1_ivar = float(max(h[3, 3], 0.0))
            src.shape_e2_ivar = float(max(h[4, 4], 0.0))
    else:
        src.shape_r_ivar = 0.0
        src.sersic = 0.0


def fit_sources(
    sources: Sequence[Source],
    blobs: Sequence[Blob],
    tims: Sequence[Tim],
    geom: BrickGeometry,
    bands: Sequence[str],
    *,
    refmap: npt.NDArray[np.integer[Any]] | None = None,
    iterative: bool = True,
) -> list[Source]:
    """Fit every blob in turn (a convenience for tests and small runs); kept sources in order."""
    renderers: dict[int, tuple[TimRenderer, TimRenderer]] = {}
    out: list[Source] = []
    for blob in blobs:
        out += _fit_members(blob, sources, tims, geom, bands, renderers, iterative, refmap)
    return out


def _fit_members(
    blob: Blob,
    sources: Sequence[Source],
    tims: Sequence[Tim],
    geom: BrickGeometry,
    bands: Sequence[str],
    renderers: dict[int, tuple[TimRenderer, TimRenderer]],
    iterative: bool,
    refmap: npt.NDArray[np.integer[Any]] | None,
) -> list[Source]:
    """``fit_blob`` on the blob's own sources, picked from the brick's source list."""
    members = [sources[i] for i in blob.sources]
    return fit_blob(
        blob,
        members,
        tims,
        geom,
        bands,
        renderers=renderers,
        iterative=iterative,
        refmap=refmap,
    )


def model_images(sources: Sequence[Source], tims: Sequence[Tim]) -> list[npt.NDArray[np.float32]]:
    """Each tim's model image (nanomaggies per pixel) of the fitted sources, stamp by stamp."""
    out: list[npt.NDArray[np.float32]] = []
    for tim in tims:
        view = full_view(tim)
        for src in sources:
            f = _flux_of(src, tim.band)
            if f == 0.0:
                continue
            st = render_unit(view, src)
            if st is not None:
                view.model[st.dst] += st.pix * f
        out.append(view.model.astype(np.float32))
    return out


# -- the fitblobs stage ------------------------------------------------------------------------
_POOL_STATE: dict[str, object] = {}
"""What forked worker processes fit against (set before the pool forks)."""


def _fit_blob_in_worker(k: int) -> tuple[int, list[Source], float]:
    """Fit blob number ``k`` of the pool state; returns (k, kept sources, seconds)."""
    import time

    blobs = _POOL_STATE["blobs"]
    sources = _POOL_STATE["sources"]
    tims = _POOL_STATE["tims"]
    geom = _POOL_STATE["geom"]
    bands = _POOL_STATE["bands"]
    renderers = _POOL_STATE["renderers"]
    assert isinstance(blobs, list) and isinstance(sources, list) and isinstance(tims, list)
    assert isinstance(geom, BrickGeometry) and isinstance(bands, tuple)
    assert isinstance(renderers, dict)
    refmap = _POOL_STATE.get("refmap")
    assert refmap is None or isinstance(refmap, np.ndarray)
    iterative = bool(_POOL_STATE.get("iterative", True))
    t0 = time.perf_counter()
    kept = _fit_members(blobs[k], sources, tims, geom, bands, renderers, iterative, refmap)
    return k, kept, time.perf_counter() - t0


def _bailed_refs(blob: Blob, sources: Sequence[Source], bands: Sequence[str]) -> list[Source]:
    """Reference sources of a blob skipped by ``--bail-out``, kept with catalogue values."""
    out: list[Source] = []
    for i in blob.sources:
        s = sources[i]
        if not s.ref_cat:
            continue
        s.blob = blob.blob_id
        s.type = "PSF"
        s.dchisq = (0.0, 0.0, 0.0, 0.0, 0.0)
        for b in bands:
            s.flux.setdefault(b, 0.0)
            s.flux_ivar.setdefault(b, 0.0)
            s.rchisq[b] = 0.0
            s.fracflux[b] = 0.0
            s.fracin[b] = 1.0
        s.extra["regular"] = False
        out.append(s)
    return out


def _check_budget(budget: float | None, t0: float, done: int, total: int, brickname: str) -> None:
    """Stop fitting once the brick's fit budget is spent.

    The checkpoint is saved on the way out, so the flow can rerun the brick with ``--bail-out``.
    """
    import time

    if budget is not None and time.perf_counter() - t0 > budget and done < total:
        raise TimeoutError(
            f"{brickname}: fit budget of {budget:g} s spent with {done} of {total} blobs "
            "fitted (checkpoint saved; rerun with --bail-out)"
        )


def mark_forced_pointsources(
    sources: Sequence[Source], refmap: npt.NDArray[np.integer[Any]] | None, geom: BrickGeometry
) -> int:
    """Mark the sources whose pixel has a BRIGHT or CLUSTER bit as forced point sources.

    legacypipe's ``force_pointsource_mask`` (oneblob): the refmap at the source's position
    before fitting, truncated to the pixel holding it.  Returns how many were marked.
    """
    from lsdr.survey.runbrick.refs import REF_BRIGHT, REF_CLUSTER

    if refmap is None:
        return 0
    ref = np.asarray(refmap)
    marked = 0
    for s in sources:
        ix = int(np.clip(s.bx, 0, geom.width - 1))
        iy = int(np.clip(s.by, 0, geom.height - 1))
        forced = bool(ref[iy, ix] & (REF_BRIGHT | REF_CLUSTER))
        s.extra[FORCED_POINTSOURCE] = forced
        marked += forced
    return marked


def stage_fitblobs(
    *,
    tims: Sequence[Tim],
    geom: BrickGeometry,
    bands: Sequence[str],
    sources: Sequence[Source],
    blobs: Sequence[Blob],
    options: RunbrickOptions | None = None,
    refmap: npt.NDArray[np.integer[Any]] | None = None,
) -> dict[str, object]:
    """Stage ``fitblobs``: fit the blobs, resuming from ``--checkpoint``, honouring ``--bail-out``.

    State gains ``sources`` (the fitted catalogue, blob by blob), ``bailout_mask`` (brick-grid
    pixels of blobs skipped by ``--bail-out``), ``model_images`` (one per tim, for the coadds)
    and ``fit_stats`` (blobs fitted / resumed / skipped, seconds).  With ``threads`` > 1 the
    blobs are fitted by forked worker processes; results are gathered in blob order, so the
    catalogue does not depend on the thread count.
    """
    import logging
    import multiprocessing
    import time
    from pathlib import Path

    from lsdr.survey.runbrick.stages import Checkpointer, read_checkpoint

    log = logging.getLogger("lsdr.survey.runbrick")
    options = options or RunbrickOptions()  # runbrick's defaults, written once there
    checkpoint = options.checkpoint
    period = float(options.checkpoint_period)
    bail_out = bool(options.bail_out)
    threads = max(int(options.threads), 1)
    budget = options.fit_budget_s
    forced = mark_forced_pointsources(sources, refmap, geom)
    if forced:
        log.info(
            "%s: fitblobs: %d sources in BRIGHT/CLUSTER masks fit as PSF", geom.brickname, forced
        )
    bboxes = {b.blob_id: (b.x0, b.x1, b.y0, b.y1) for b in blobs}
    path = Path(checkpoint) if checkpoint else None
    done: dict[int, object] = read_checkpoint(path, geom.brickname, bboxes) if path else {}
    saver = Checkpointer(path, geom.brickname, period)
    for iblob, result in done.items():
        saver.results[iblob] = (bboxes[iblob], result)
    results: dict[int, list[Source]] = {}
    for iblob, result in done.items():
        assert isinstance(result, list)
        results[iblob] = result
    bailout = np.zeros((geom.height, geom.width), bool)
    todo = [k for k, b in enumerate(blobs) if b.blob_id not in results]
    skipped = 0
    if bail_out:
        for k in todo:
            blob = blobs[k]
            bailout[blob.slices] |= blob.mask
            results[blob.blob_id] = _bailed_refs(blob, sources, bands)
            skipped += 1
        todo = []
    t0 = time.perf_counter()
    fit_seconds = 0.0
    _POOL_STATE.update(
        blobs=list(blobs),
        sources=list(sources),
        tims=list(tims),
        geom=geom,
        bands=tuple(bands),
        renderers={},
        refmap=refmap,
        iterative=bool(options.iterative),
    )
    try:
        with ExitStack() as stack:
            finished: Iterator[tuple[int, list[Source], float]]
            if threads > 1 and len(todo) > 1:
                pool = stack.enter_context(multiprocessing.get_context("fork").Pool(threads))
                finished = pool.imap_unordered(_fit_blob_in_worker, todo)
            else:
                finished = map(_fit_blob_in_worker, todo)
            for k, kept, sec in finished:
                blob = blobs[k]
                results[blob.blob_id] = kept
                fit_seconds += sec
                saver.add(blob.blob_id, bboxes[blob.blob_id], kept)
                _check_budget(budget, t0, len(results), len(blobs), geom.brickname)
    finally:
        _POOL_STATE.clear()
        saver.flush()
    fitted: list[Source] = []
    for blob in blobs:
        fitted += results.get(blob.blob_id, [])
    wall = time.perf_counter() - t0
    nsrc = sum(len(blobs[k].sources) for k in todo)
    log.info(
        "%s: fitblobs: %d blobs fitted (%d sources, %.1f s wall, %.1f s CPU), %d from the "
        "checkpoint, %d skipped by bail-out; %d sources kept",
        geom.brickname,
        len(todo),
        nsrc,
        wall,
        fit_seconds,
        len(done),
        skipped,
        len(fitted),
    )
    return {
        "sources": fitted,
        "bailout_mask": bailout,
        "model_images": model_images(fitted, tims),
        "fit_stats": {
            "blobs_fitted": len(todo),
            "blobs_resumed": len(done),
            "blobs_bailed": skipped,
            "sources_fitted": nsrc,
            "seconds_wall": wall,
            "seconds_fit": fit_seconds,
        },
    }
