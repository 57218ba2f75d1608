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
