"""Sky maps of the brick summary: per band, each brick drawn as its RA/Dec box, coloured.

Three PNGs in the release's ``plots/``: ``brick-summary-psfdepth.png`` and
``brick-summary-galdepth.png`` (5σ depth, AB mag) and ``brick-summary-nexp.png`` (median
exposures per pixel), one panel per band.  Bricks without data in a band (depth 0, nexp 0)
are drawn in grey so holes in the coverage show.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.fileio import atomic_path
from lsdr.survey.core.layout import ReleaseLayout

MAPS = (
    ("psfdepth", "5σ PSF depth (AB mag)", "PSF depth"),
    ("galdepth", "5σ galaxy depth (AB mag)", "galaxy depth"),
    ("nexp", "median exposures per pixel", "exposures"),
)
"""(column stem, colour-bar label, title words) of each sky map."""


def plot_brick_summary(
    summary: npt.NDArray[np.void], layout: ReleaseLayout, bands: Sequence[str]
) -> list[Path]:
    """Draw the sky maps of a merged brick summary (needs ra1..dec2); return the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    ra1, ra2 = _unwrapped(summary["ra1"], summary["ra2"])
    dec1, dec2 = summary["dec1"], summary["dec2"]
    boxes = np.stack(
        [
            np.stack([ra1, dec1], axis=-1),
            np.stack([ra2, dec1], axis=-1),
            np.stack([ra2, dec2], axis=-1),
            np.stack([ra1, dec2], axis=-1),
        ],
        axis=1,
    )
    paths: list[Path] = []
    for stem, label, words in MAPS:
        fig, axes = plt.subplots(
            1, len(bands), figsize=(4.6 * len(bands), 4.0), squeeze=False, constrained_layout=True
        )
        for ax, band in zip(axes[0], bands, strict=True):
            values = np.asarray(summary[f"{stem}_{band}"], dtype=np.float64)
            has = values > 0
            if np.any(~has):
                ax.add_collection(
                    PolyCollection(
                        list(boxes[~has]),
                        facecolors="0.8",
                        edgecolors="0.5",
                        linewidths=0.3,
                        label=f"no {band} coverage",
                    )
                )
                ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
            coll: Any = PolyCollection(
                list(boxes[has]), array=values[has], cmap="viridis", edgecolors="k", linewidths=0.3
            )
            if np.any(has):
                lo, hi = float(values[has].min()), float(values[has].max())
                coll.set_clim(lo, hi if hi > lo else lo + 1.0)
            ax.add_collection(coll)
            bar = fig.colorbar(coll, ax=ax, shrink=0.85)
            bar.set_label(label)
            _frame(ax, ra1, ra2, dec1, dec2)
            ax.set_title(f"{layout.dr} {words}, {band} band ({int(np.sum(has))} bricks)".strip())
        path = layout.brick_summary_plot(stem)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def _unwrapped(
    ra1: npt.ArrayLike, ra2: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Brick RA edges, shifted by −360 above 180 when the bricks straddle RA 0."""
    lo = np.asarray(ra1, dtype=np.float64).copy()
    hi = np.asarray(ra2, dtype=np.float64).copy()
    if len(lo) and lo.min() < 90.0 and hi.max() > 270.0:
        shift = lo >= 180.0
        lo[shift] -= 360.0
        hi[shift] -= 360.0
    return lo, hi


def _frame(ax: Any, ra1: Any, ra2: Any, dec1: Any, dec2: Any) -> None:
    """Axis limits around the bricks, RA increasing to the left (east), labels with units."""
    if len(ra1):
        pad_ra = 0.05 * max(float(np.max(ra2) - np.min(ra1)), 0.25)
        pad_dec = 0.05 * max(float(np.max(dec2) - np.min(dec1)), 0.25)
        ax.set_xlim(float(np.max(ra2)) + pad_ra, float(np.min(ra1)) - pad_ra)
        ax.set_ylim(float(np.min(dec1)) - pad_dec, float(np.max(dec2)) + pad_dec)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(3))
    ax.set_xlabel("RA (deg)")
    ax.set_ylabel("Dec (deg)")
    ax.set_aspect(1.0 / max(np.cos(np.deg2rad(float(np.mean(dec1)) if len(dec1) else 0.0)), 0.1))
