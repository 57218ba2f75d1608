"""The sky of a CCD: clipped sky statistics and the spline sky model."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from lsdr.survey.pretractor.splinesky import (
    PERCENTILES,
    SplineSkyModel,
    choose_boxsize,
    fit_spline_sky,
)
from lsdr.survey.pretractor.zeropoints.stats import sample, sigma_clip


def measure_sky(
    img: npt.NDArray[np.float32], good: npt.NDArray[np.bool_], ivar: npt.NDArray[np.float32]
) -> tuple[SplineSkyModel, npt.NDArray[np.float32], dict[str, float]]:
    """Sky statistics and the spline sky (legacypipe's two-pass masking); image units."""
    from scipy.ndimage import binary_dilation, uniform_filter

    pix = sample(img[good])
    sig1 = float(1.0 / np.sqrt(np.median(ivar[good])))
    sky_med = float(np.median(pix))
    cmed = float(np.median(sigma_clip(pix, 2.0, 2.0)))
    boxsize = choose_boxsize(img.shape)
    boxcar = 5
    first = fit_spline_sky(img, good, cmed, boxsize)
    resid = img - first.image(img.shape)
    masked = np.abs(uniform_filter(resid, size=boxcar, mode="constant")) > 3.0 * sig1 / boxcar
    masked = binary_dilation(masked, iterations=3)
    good2 = good & ~masked
    if good2.sum() > 100:
        sky_john = float(np.median(sigma_clip(sample(img[good2]), 2.0, 2.0)))
    else:
        good2 = good
        sky_john = cmed
    model = fit_spline_sky(img, good2, sky_john, boxsize)
    sky_img = model.image(img.shape)
    diff = sample((img - sky_img)[good2])
    pcts = np.percentile(diff, PERCENTILES) if len(diff) else np.zeros(len(PERCENTILES))
    clipped = sigma_clip(pix, 2.0, 2.0)
    stats = {
        "sig1": sig1,
        "sky_mode": float(3.0 * np.median(clipped) - 2.0 * np.mean(clipped)),
        "sky_med": sky_med,
        "sky_cmed": cmed,
        "sky_john": sky_john,
        "sky_fmasked": float(1.0 - good2.sum() / good2.size),
    }
    stats.update({f"sky_p{p}": float(v) for p, v in zip(PERCENTILES, pcts, strict=True)})
    model = SplineSkyModel(model.xgrid, model.ygrid, model.gridvals, stats=stats)
    return model, sky_img, stats
