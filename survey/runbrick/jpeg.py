"""The brick's model and residual JPEGs, ``legacysurvey-<brick>-{model,resid}.jpg``.

Both use the bands → colour channels and scales of ``-image.jpg`` (``coadds.RGB_SCALES``,
g → blue, r → green, z → red, north up).  The model picture is the image picture's asinh
stretch applied to the coadded model; the residual (image − model, 0 without coverage, and 0
outside the brick's unique area as legacypipe does) uses legacypipe's residual stretch, linear
from −0.1 to 0.1 after the band scale, so a perfect fit is mid-grey.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.runbrick.coadds import band_channels, rgb_image, to_jpeg_pixels, write_jpeg

RESID_RANGE = (-0.1, 0.1)
"""Scaled residual that maps to black and to white (legacypipe ``get_rgb(resids=True)``)."""

F32 = npt.NDArray[np.float32]


def rgb_linear(
    images: Mapping[str, F32], lo: float = RESID_RANGE[0], hi: float = RESID_RANGE[1]
) -> npt.NDArray[np.uint8]:
    """A linear colour picture (H, W, 3), north up: channel = clip((scale·img − lo)/(hi − lo))."""
    span = np.float32(hi - lo)
    return to_jpeg_pixels(band_channels(images, lambda x: (x - np.float32(lo)) / span))


def residual_images(
    images: Mapping[str, F32],
    models: Mapping[str, F32],
    invvars: Mapping[str, F32],
    unique: npt.NDArray[np.bool_] | None,
) -> dict[str, F32]:
    """image − model per band, 0 where the band has no weight or outside the unique area."""
    out: dict[str, F32] = {}
    for band, model in models.items():
        keep = invvars[band] > 0
        if unique is not None:
            keep &= unique
        out[band] = np.where(keep, images[band] - model, np.float32(0.0)).astype(np.float32)
    return out


def write_model_jpegs(
    layout: ReleaseLayout,
    brick: str,
    images: Mapping[str, F32],
    models: Mapping[str, F32],
    invvars: Mapping[str, F32],
    unique: npt.NDArray[np.bool_] | None,
) -> list[Path]:
    """Write ``-model.jpg`` and ``-resid.jpg`` (nothing when no band has a model)."""
    if not models:
        return []
    model_path = write_jpeg(layout.coadd_jpeg(brick, "model"), rgb_image(dict(models)))
    resid = residual_images(images, models, invvars, unique)
    resid_path = write_jpeg(layout.coadd_jpeg(brick, "resid"), rgb_linear(resid))
    return [model_path, resid_path]
