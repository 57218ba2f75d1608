"""Per-amplifier zeropoint corrections of Mosaic and 90Prime CCDs, applied as legacypipe does.

The CP leaves small gain mismatches between the four amplifiers of a Mosaic-3 or 90Prime CCD
(a few per cent).  legacypipe corrects them with a table of offsets ``dzp`` (mag) per camera,
band, CCD, amplifier and MJD range, each for a pixel box ``[xlo, xhi) × [ylo, yhi)`` of the
CCD: after the sky is subtracted, the pixels of a box are multiplied by ``10^(0.4 dzp)`` and
their inverse variance divided by its square, both when ``legacy_zeropoints`` measures the
zeropoint and when runbrick reads the image.  The boxes are in the image's own pixel
coordinates (a binned image sees the native boxes unchanged).  lite applies the same table
(legacypipe's ``data/ampcorrections.fits``, :mod:`lsdr.survey.core.legacypipe_data`) at the
same two places, and the simulator writes its images with the inverse offsets, as a CP image
has them, so that both engines recover the true fluxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.legacypipe_data import legacypipe_data_file

AMP_CAMERAS = frozenset({"90prime", "mosaic"})
"""The cameras legacypipe corrects per amplifier (``bok.py``, ``mosaic.py``); DECam is not."""
AMP_TABLE = "ampcorrections.fits"


@dataclass(frozen=True)
class AmpBox:
    """One amplifier's correction: its pixel box (``xhi``, ``yhi`` exclusive) and offset (mag)."""

    xlo: int
    xhi: int
    ylo: int
    yhi: int
    dzp: float


@cache
def _table() -> npt.NDArray[Any]:
    """legacypipe's amplifier-correction table (read once per process)."""
    import fitsio

    return np.asarray(fitsio.read(str(legacypipe_data_file(AMP_TABLE))))


def amp_boxes(camera: str, band: str, ccdname: str, mjd: float) -> list[AmpBox]:
    """The corrections for one CCD of an exposure: rows of its camera, band, CCD and MJD range.

    An MJD bound that is not finite is open, as in legacypipe; cameras without corrections
    (DECam) have none, and their table is never read.
    """
    if camera.strip() not in AMP_CAMERAS:
        return []
    table = _table()
    start, end = table["mjd_start"], table["mjd_end"]
    rows = (
        (np.char.strip(table["camera"].astype(str)) == camera.strip())
        & (np.char.strip(table["filter"].astype(str)) == band.strip())
        & (np.char.strip(table["ccdname"].astype(str)) == ccdname.strip())
        & (~np.isfinite(start) | (mjd >= start))
        & (~np.isfinite(end) | (mjd <= end))
    )
    return [
        AmpBox(int(r["xlo"]), int(r["xhi"]), int(r["ylo"]), int(r["yhi"]), float(r["dzp"]))
        for r in table[rows]
    ]


def amp_scale(
    boxes: list[AmpBox], x0: int, y0: int, shape: tuple[int, int]
) -> npt.NDArray[np.float32] | None:
    """The factor of each pixel of a cut-out at (x0, y0) (0-based) of the CCD; None: all 1."""
    if not boxes:
        return None
    h, w = shape
    scale = np.ones((h, w), np.float32)
    for box in boxes:
        xs, xe = max(0, box.xlo - x0), min(w, box.xhi - x0)
        ys, ye = max(0, box.ylo - y0), min(h, box.yhi - y0)
        if xs < xe and ys < ye:
            scale[ys:ye, xs:xe] = np.float32(10.0 ** (0.4 * box.dzp))
    return scale


def apply_amp_correction(
    image: npt.NDArray[np.floating[Any]],
    invvar: npt.NDArray[np.floating[Any]] | None,
    scale: npt.NDArray[np.float32] | None,
) -> None:
    """Correct a sky-subtracted cut-out in place: image × scale, inverse variance ÷ scale²."""
    if scale is None:
        return
    image *= scale
    if invvar is not None:
        invvar /= scale * scale
