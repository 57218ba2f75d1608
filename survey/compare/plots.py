"""The comparison's plots (PNG, matplotlib's Agg backend), of all bricks together.

``flux-ratio.png``: lite / legacypipe flux of matched point sources against legacypipe's
magnitude, per band; ``offsets.png``: position offsets of matched sources; ``maskbits.png``:
per maskbit, the overlap of the pixels set in either map.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lsdr.survey.compare.metrics import FLUX_SN, MatchedSources, point_sources
from lsdr.survey.runbrick import tractorschema as ts
from lsdr.survey.simulate.validate import figure_module as _figure
from lsdr.survey.simulate.validate import save_png as _save_png

if TYPE_CHECKING:
    from lsdr.survey.compare.metrics import BrickComparison
    from lsdr.survey.compare.runs import Comparison

PLOTS = ("flux-ratio.png", "offsets.png", "maskbits.png")
RATIO_RANGE = (0.8, 1.2)
"""The flux-ratio plot's scale; ratios outside are drawn on its edge as triangles."""


def plot_flux_ratio(m: MatchedSources, path: Path) -> Path:
    """Per band: f_lite / f_lp of pairs typed PSF by both, against legacypipe's magnitude."""
    plt = _figure()
    fig, axes = plt.subplots(len(m.bands), 1, figsize=(6, 2.3 * len(m.bands)), sharex=True)
    axes = np.atleast_1d(axes)
    both_psf = (m.type_lite == "PSF") & (m.type_lp == "PSF")
    for ax, b in zip(axes, m.bands, strict=True):
        with np.errstate(invalid="ignore", divide="ignore"):
            mag = ts.flux_to_mag(m.flux_lp[b])
            ratio = m.flux_lite[b] / m.flux_lp[b]
        bright = point_sources(m, b)
        faint = both_psf & ~bright & np.isfinite(mag) & np.isfinite(ratio)
        lo, hi = RATIO_RANGE
        shown = np.clip(ratio, lo, hi)
        out = (ratio < lo) | (ratio > hi)
        for sel, size, colour, label in (
            (faint, 4, "0.6", f"S/N ≤ {FLUX_SN:g}"),
            (bright, 6, "C0", f"S/N > {FLUX_SN:g}"),
        ):
            ax.scatter(mag[sel & ~out], shown[sel & ~out], s=size, c=colour, label=label)
            # Off the scale: drawn on its edge as a triangle pointing the way it is off.
            for edge, marker in ((ratio < lo, "v"), (ratio > hi, "^")):
                ax.scatter(mag[sel & edge], shown[sel & edge], s=4 * size, c=colour, marker=marker)
        if bright.any():
            ax.axhline(float(np.median(ratio[bright])), color="C0", ls="--", lw=0.8)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_ylim(lo - 0.01, hi + 0.01)
        ax.set_ylabel(f"{b}: f_lite / f_lp")
        ax.legend(fontsize=7, loc="upper left")
    axes[-1].set_xlabel("legacypipe AB mag (point sources in both)")
    fig.suptitle("flux: lite / legacypipe", fontsize=9)
    fig.tight_layout()
    return _save_png(plt, fig, path)


def plot_offsets(m: MatchedSources, radius_arcsec: float, path: Path) -> Path:
    """Position offsets lite − legacypipe of matched sources (mas), S/N > 20 highlighted."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    bright = m.lp_sn[m.lp_matched] > FLUX_SN
    ax.scatter(m.d_ra[~bright] * 1e3, m.d_dec[~bright] * 1e3, s=5, c="0.6", label="S/N ≤ 20")
    ax.scatter(m.d_ra[bright] * 1e3, m.d_dec[bright] * 1e3, s=7, c="C1", label="S/N > 20")
    lim = radius_arcsec * 1e3
    ax.add_patch(plt.Circle((0, 0), lim, fill=False, ls=":", color="k", lw=0.8))
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("ΔRA cos δ, lite − legacypipe (mas)")
    ax.set_ylabel("ΔDec (mas)")
    ax.legend(fontsize=7)
    ax.set_title(f"positions: {m.n_matched} matched sources", fontsize=9)
    fig.tight_layout()
    return _save_png(plt, fig, path)


def plot_maskbits(c: BrickComparison, path: Path) -> Path:
    """Per maskbit set in either map: pixels in both / in either, with the pixel counts."""
    plt = _figure()
    bits = c.maskbits
    fig, ax = plt.subplots(figsize=(6, 0.35 * max(len(bits), 2) + 1.2))
    names = [b.bit for b in bits]
    overlap = [0.0 if not np.isfinite(b.overlap) else b.overlap for b in bits]
    y = np.arange(len(bits))
    ax.barh(y, overlap, color="C2")
    for i, b in enumerate(bits):
        ax.text(
            1.01,
            i,
            f"lite {b.n_lite}, lp {b.n_legacypipe}, both {b.n_both}",
            va="center",
            fontsize=7,
        )
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.6)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlabel("pixels set in both / set in either")
    ax.set_title(f"maskbits: {c.maskbits_pixels} pixels", fontsize=9)
    fig.tight_layout()
    return _save_png(plt, fig, path)


def write_plots(comparison: Comparison, out: Path) -> list[Path]:
    """The three plots of all bricks into ``out`` (the maskbits one when maps were compared)."""
    m, c = comparison.matched, comparison.result.combined
    made = [
        plot_flux_ratio(m, out / PLOTS[0]),
        plot_offsets(m, comparison.result.radius_arcsec, out / PLOTS[1]),
    ]
    if c.maskbits:
        made.append(plot_maskbits(c, out / PLOTS[2]))
    return made
