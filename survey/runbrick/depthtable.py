"""The brick's depth histogram, ``coadd/<bri>/<brick>/legacysurvey-<brick>-depth.fits``.

As legacypipe's ``_depth_histogram`` (``stage_coadds``): over the brick's unique pixels, the
5σ point-source and galaxy detection depths in AB mag, −2.5 (log10(5/√depth) − 9), with 0 where
there is no coverage, are counted in bins of 0.1 mag from 20 to 25 whose outer edges are
widened to 0 and 100 (so every unique pixel is counted, uncovered ones in the first bin).
Table HDU ``DEPTH``: ``depthlo``, ``depthhi`` (f4), then ``counts_ptsrc_<b>``,
``counts_gal_<b>`` (i4) per band of the run, in the run's band order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.fileio import atomic_path

EXTNAME = "DEPTH"


def depth_bins() -> npt.NDArray[np.float64]:
    """The bin edges: 20, 20.1, …, 25 with the first and last replaced by 0 and 100."""
    bins = np.arange(20, 25.001, 0.1)
    bins[0] = 0.0
    bins[-1] = 100.0
    return bins


def depth_mag(detiv: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """5σ detection depth (AB mag, float32 as legacypipe) of a detection inverse variance.

    0 where there is no coverage.
    """
    det = np.asarray(detiv, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.float32(-2.5) * (np.log10(np.float32(5.0) / np.sqrt(det)) - np.float32(9.0))
    mag[~np.isfinite(mag)] = 0.0
    return mag


class DepthTable:
    """Accumulates the per-band histograms over a brick's unique pixels, then writes them."""

    def __init__(self, unique: npt.NDArray[np.bool_], bands: Sequence[str]) -> None:
        """Histograms over the pixels where ``unique`` is true, one column pair per band."""
        self.unique = np.asarray(unique, bool)
        self.bands = tuple(bands)
        self.bins = depth_bins()
        self.counts: dict[str, npt.NDArray[np.int32]] = {}

    def _histogram(self, detiv: npt.NDArray[np.floating] | None) -> npt.NDArray[np.int32]:
        if detiv is None:
            values = np.zeros(int(self.unique.sum()), np.float32)
        else:
            values = depth_mag(np.asarray(detiv)[self.unique])
        return np.histogram(values, bins=self.bins)[0].astype(np.int32)

    def add(
        self,
        band: str,
        psfdepth: npt.NDArray[np.floating] | None,
        galdepth: npt.NDArray[np.floating] | None,
    ) -> None:
        """Count one band's point-source and galaxy depth maps (None: no coverage)."""
        self.counts[f"counts_ptsrc_{band}"] = self._histogram(psfdepth)
        self.counts[f"counts_gal_{band}"] = self._histogram(galdepth)

    def table(self) -> npt.NDArray[np.void]:
        """The rows; bands never added count every unique pixel in the first bin."""
        for band in self.bands:
            if f"counts_ptsrc_{band}" not in self.counts:
                self.add(band, None, None)
        names = [f"counts_{kind}_{b}" for b in self.bands for kind in ("ptsrc", "gal")]
        dtype = [("depthlo", "f4"), ("depthhi", "f4")] + [(n, "i4") for n in names]
        out = np.zeros(len(self.bins) - 1, dtype)
        out["depthlo"] = self.bins[:-1]
        out["depthhi"] = self.bins[1:]
        for n in names:
            out[n] = self.counts[n]
        return out

    def write(self, path: Path) -> Path:
        """Write the table (HDU ``DEPTH``) atomically."""
        import fitsio

        with atomic_path(path) as tmp:
            fitsio.write(str(tmp), self.table(), extname=EXTNAME, clobber=True)
        return path
