"""The robust statistics of the zeropoint phase: sigma clipping and subsampling."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def sigma_clip(values: FloatArray, low: float, high: float, iters: int = 20) -> FloatArray:
    """Iterative sigma clipping around the mean (as ``scipy.stats.sigmaclip``)."""
    out = np.asarray(values, np.float64)
    for _ in range(iters):
        if len(out) == 0:
            break
        mean, std = out.mean(), out.std()
        keep = (out >= mean - low * std) & (out <= mean + high * std)
        if keep.all():
            break
        out = out[keep]
    return out


def clip_bounds(values: FloatArray, low: float, high: float) -> tuple[FloatArray, float, float]:
    """Clipped values and the final bounds (``scipy.stats.sigmaclip``'s return)."""
    clipped = sigma_clip(values, low, high)
    if len(clipped) == 0:
        return clipped, -np.inf, np.inf
    mean, std = clipped.mean(), clipped.std()
    return clipped, float(mean - low * std), float(mean + high * std)


def sample(values: npt.NDArray[np.floating], limit: int = 200_000) -> FloatArray:
    """Every n-th value, at most about ``limit`` of them, as float64."""
    step = max(1, len(values) // limit)
    return np.asarray(values[::step], np.float64)
