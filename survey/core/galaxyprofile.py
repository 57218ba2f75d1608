"""The exponential galaxy profile of the Legacy Surveys catalogues, as a mixture of Gaussians.

DR10's ``REX``/``EXP`` fluxes are the total fluxes of the Tractor's exponential: not the exact
exponential but SDSS *Photo*'s softened, truncated one ("lux", cut off smoothly between 3 and
4 r_e), approximated by six concentric Gaussians (Hogg & Lang 2013, PASP 125, 719).  Fitting
the exact exponential to a noise-free Tractor model gives 1–2 % more flux (docs/runbrick-fitting.md
"Flux parity with legacypipe"), so lite renders this mixture, for REX fits and for the galaxy
detection norm.  Amplitudes are normalised to unit total flux; variances are in units of r_e²
per axis.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_LUX_AMPLITUDES = np.array(
    [2.34853813e-03, 3.07995260e-02, 2.23364214e-01, 1.17949102e00, 4.33873750e00, 5.99820770e00]
)
LUX_AMPLITUDES = _LUX_AMPLITUDES / _LUX_AMPLITUDES.sum()
"""Weights of the six Gaussians (sum 1)."""
LUX_VARIANCES = np.array(
    [1.20078965e-03, 8.84526493e-03, 3.91463084e-02, 1.39976817e-01, 4.60962500e-01, 1.50159566e00]
)
"""Per-axis variances of the six Gaussians, in units of r_e²."""


def exp_transform(
    r_e_pix: float, k2pi: FloatArray, derivs: bool = False
) -> tuple[FloatArray, FloatArray | None]:
    """Fourier transform of a unit-flux round "lux" exponential of half-light radius r_e (pixels).

    ``k2pi`` is (2π k)² with k in cycles per pixel.  A Gaussian of variance v transforms to
    exp(−v (2πk)²/2).  With ``derivs`` the derivative with respect to ln r_e comes second.
    """
    r2 = r_e_pix * r_e_pix
    total = np.zeros_like(k2pi)
    dtotal = np.zeros_like(k2pi) if derivs else None
    for amp, var in zip(LUX_AMPLITUDES, LUX_VARIANCES, strict=True):
        arg = 0.5 * var * r2 * k2pi
        term = amp * np.exp(-arg)
        total += term
        if dtotal is not None:
            dtotal -= 2.0 * arg * term
    return total, dtotal


_LUV_AMPLITUDES = np.array(
    [
        4.26347652e-02,
        2.40127183e-01,
        6.85907632e-01,
        1.51937350e00,
        2.83627243e00,
        4.46467501e00,
        5.72440830e00,
        5.60989349e00,
    ]
)
DEV_CORE = 0.010233
"""Flux of the de Vaucouleurs mixture's point-like core (corrects the softened centre)."""
DEV_AMPLITUDES = np.concatenate(
    [[DEV_CORE], _LUV_AMPLITUDES * (1 - DEV_CORE) / _LUV_AMPLITUDES.sum()]
)
"""Weights of the Tractor's de Vaucouleurs mixture ("luv", Hogg & Lang 2013): a core of zero
width, then eight Gaussians (sum 1)."""
DEV_VARIANCES = np.array(
    [
        0.0,
        2.23759216e-04,
        1.00220099e-03,
        4.18731126e-03,
        1.69432589e-02,
        6.84850479e-02,
        2.87207080e-01,
        1.33320254e00,
        8.40215071e00,
    ]
)
"""Per-axis variances of the de Vaucouleurs mixture, in units of r_e²."""

MIXTURES: dict[str, tuple[FloatArray, FloatArray]] = {
    "EXP": (LUX_AMPLITUDES, LUX_VARIANCES),
    "REX": (LUX_AMPLITUDES, LUX_VARIANCES),
    "DEV": (DEV_AMPLITUDES, DEV_VARIANCES),
}
"""Amplitudes and variances (units of r_e²) of each galaxy type's profile."""
EXTENT_RE = {"EXP": 4.8, "REX": 4.8, "DEV": 8.7}
"""Radius (in r_e) a model stamp must reach: 8 scale lengths of the exponential, 3σ of the
widest de Vaucouleurs Gaussian."""


def shape_basis(r_e: float, e1: float, e2: float) -> FloatArray:
    """The Tractor's ``EllipseE.getRaDecBasis`` in arcsec: unit circle → (east, north) offsets.

    θ = ½ atan2(e2, e1), e = |(e1, e2)|, ab = (1 + e)/(1 − e); the matrix is
    r_e [[cos θ/ab, sin θ], [−sin θ/ab, cos θ]], so the profile's covariance is var · G Gᵀ.
    """
    e = min(float(np.hypot(e1, e2)), 0.999)
    theta = 0.5 * float(np.arctan2(e2, e1))
    ab = (1.0 + e) / (1.0 - e)
    ct, st = np.cos(theta), np.sin(theta)
    return r_e * np.array([[ct / ab, st], [-st / ab, ct]])


def pixel_covariance(r_e: float, e1: float, e2: float, jacobian: FloatArray) -> FloatArray:
    """The unit-variance covariance (pixels²) of a galaxy shape on an image.

    ``jacobian`` is d(x, y)/d(east, north) in pixels per arcsec at the source.
    """
    b = np.asarray(jacobian, np.float64) @ shape_basis(r_e, e1, e2)
    return np.asarray(b @ b.T, np.float64)


def mixture_transform(
    kind: str,
    cov: FloatArray,
    kx: FloatArray,
    ky: FloatArray,
    dcovs: tuple[FloatArray, ...] = (),
) -> tuple[FloatArray, list[FloatArray]]:
    """Fourier transform of a unit-flux galaxy of type ``kind`` with pixel covariance ``cov``.

    ``kx`` (columns) and ``ky`` (rows) are in cycles per pixel; a Gaussian of covariance v·C
    transforms to exp(−2π² v kᵀ C k).  For each ∂C/∂p in ``dcovs`` the transform's derivative
    with respect to p comes back too (the list, in the same order).
    """
    amps, variances = MIXTURES[kind]

    def quadratic(c: FloatArray) -> FloatArray:
        q = (2.0 * np.pi) ** 2 * (
            c[0, 0] * kx[None, :] ** 2
            + 2.0 * c[0, 1] * kx[None, :] * ky[:, None]
            + c[1, 1] * ky[:, None] ** 2
        )
        return np.asarray(q, np.float64)

    quad = quadratic(cov)
    dquads = [quadratic(d) for d in dcovs]
    total: FloatArray = np.zeros(np.shape(quad), np.float64)
    weighted: FloatArray = np.zeros(np.shape(quad), np.float64)
    for amp, var in zip(amps, variances, strict=True):
        term = amp * np.exp(-0.5 * var * quad)
        total += term
        if dquads:
            weighted -= 0.5 * var * term
    return total, [weighted * dq for dq in dquads]


def covariance_derivatives(
    r_e: float, e1: float, e2: float, jacobian: FloatArray, step: float = 1e-5
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """∂C/∂ln r_e, ∂C/∂e1, ∂C/∂e2 of ``pixel_covariance`` (central differences of a 2×2)."""

    def cov(lr: float, a: float, b: float) -> FloatArray:
        return pixel_covariance(r_e * float(np.exp(lr)), e1 + a, e2 + b, jacobian)

    h = step
    return (
        (cov(h, 0, 0) - cov(-h, 0, 0)) / (2 * h),
        (cov(0, h, 0) - cov(0, -h, 0)) / (2 * h),
        (cov(0, 0, h) - cov(0, 0, -h)) / (2 * h),
    )
