"""The release's depth histogram: area per 5σ depth bin, per band, from the coadd depth maps.

Each brick's ``depth`` (point source) and ``galdepth`` (0.45″ galaxy) maps hold the detection
inverse variance in 1/nanomaggy² (0 = no coverage); the 5σ depth is
22.5 − 2.5·log10(5/√ivar) AB mag.  Only the brick's primary pixels (maskbit NPRIMARY clear)
count, so the overlap between neighbouring bricks is counted once.  Each brick gives a small
per-brick table of pixel counts and areas in fixed bins (``state/depth/<bri>/depth-<brick>.fits``),
and the release's table (``<dr>-depth.fits``) is their sum: merging is additive, one brick at a
time, so memory does not grow with the release.  legacypipe's own per-brick
``legacysurvey-<brick>-depth.fits`` (0.1 mag bins, counts only) is left as runbrick wrote it.

Table HDU ``DEPTH``, one row per bin: ``depthlo``, ``depthhi`` (f4, AB mag; bins of 0.05 mag
from 20 to 26, plus [0, 20) and [26, 100) for shallower and deeper covered pixels), then per
band ``counts_ptsrc_<b>``, ``counts_gal_<b>`` (i8, primary pixels with coverage) and
``area_ptsrc_<b>``, ``area_gal_<b>`` (f8, deg²).  Header: ``BANDS``, ``NBRICKS``, ``NPIXPRIM``
and ``AREA`` (primary pixels and deg², covered or not), and in the release's table
``MEDPSF_<B>``/``MEDGAL_<B>`` (median 5σ depth over the covered area, mag).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.fileio import atomic_path
from lsdr.survey.core.fitsread import read_image
from lsdr.survey.core.layout import ReleaseLayout, checked_brick

EXTNAME = "DEPTH"
BIN_WIDTH = 0.05
"""Width of the depth bins, mag."""
DEPTH_LO = 20.0
DEPTH_HI = 26.0
"""Range of the fine bins, mag; shallower and deeper covered pixels go to the two end rows."""
OUTER_LO = 0.0
OUTER_HI = 100.0
"""Outer edges of the end rows (as legacypipe's per-brick depth table)."""
KINDS = (("ptsrc", "depth"), ("gal", "galdepth"))
"""(column word, coadd product) of the two depths."""
BAND_ORDER = "ugrizY"
NPRIMARY_DEFAULT = 1


@dataclass(frozen=True)
class BrickDepthCounts:
    """One brick's depth counts: the per-brick table written by ``brick_depth_counts``."""

    brick: str
    path: str


@dataclass(frozen=True)
class DepthHistogramResult:
    """The release's depth histogram: table, plot, bricks and area summed, per-band medians."""

    path: str
    plot: str
    nbricks: int
    area_deg2: float
    median_psfdepth: dict[str, float] = field(default_factory=dict)
    """Band → median 5σ point-source depth (mag) over the covered primary area."""
    median_galdepth: dict[str, float] = field(default_factory=dict)
    """Band → median 5σ galaxy depth (mag) over the covered primary area."""


def bin_edges() -> npt.NDArray[np.float64]:
    """All bin edges: 0, 20, 20.05, …, 26, 100."""
    n = round((DEPTH_HI - DEPTH_LO) / BIN_WIDTH)
    inner = np.round(DEPTH_LO + BIN_WIDTH * np.arange(n + 1), 6)
    return np.concatenate([[OUTER_LO], inner, [OUTER_HI]])


def depth_mag(ivar: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """5σ depth (AB mag) of a detection inverse variance (1/nanomaggy²); NaN where ivar ≤ 0."""
    iv = np.asarray(ivar, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = 22.5 - 2.5 * np.log10(5.0 / np.sqrt(iv))
    return np.where(iv > 0, mag, np.nan)


def bin_index(mag: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """Row of each (finite) depth: 0 below 20, 1 + ⌊(m − 20)/0.05⌋ inside, last row from 26."""
    inner = bin_edges()[1:-1]
    return np.asarray(np.searchsorted(inner, mag, side="right"), np.intp)


def pixel_area_deg2(header: Any, path: Path) -> float:
    """Area of one pixel (deg²) from the CD matrix of a coadd header."""
    try:
        cd = [float(header[k]) for k in ("CD1_1", "CD1_2", "CD2_1", "CD2_2")]
    except (KeyError, TypeError, ValueError) as err:
        raise InputFileError(f"{path}: no CD matrix in the header ({err})") from err
    return abs(cd[0] * cd[3] - cd[1] * cd[2])


def _nprimary_bit(header: Any) -> int:
    """The NPRIMARY bit value of a maskbits header (``MB_NPRIMARY``), legacypipe's 1 if absent."""
    try:
        return int(header["MB_NPRIMARY"])
    except (KeyError, TypeError, ValueError):
        return NPRIMARY_DEFAULT


def sort_bands(bands: Sequence[str]) -> list[str]:
    """Bands in the survey's order (u g r i z Y), unknown ones after, alphabetically."""
    return sorted(set(bands), key=lambda b: (BAND_ORDER.find(b) % 100, b))


def brick_bands(layout: ReleaseLayout, brick: str) -> list[str]:
    """The bands with a ``depth`` map in the brick's coadd directory."""
    pattern = re.compile(rf"legacysurvey-{re.escape(brick)}-depth-([A-Za-z0-9]+)\.fits\.fz")
    d = layout.coadd_dir(brick)
    if not d.is_dir():
        return []
    return sort_bands([m.group(1) for p in d.iterdir() if (m := pattern.fullmatch(p.name))])


def _empty_table(bands: Sequence[str]) -> npt.NDArray[np.void]:
    edges = bin_edges()
    dtype: list[tuple[str, str]] = [("depthlo", "f4"), ("depthhi", "f4")]
    for band in bands:
        dtype += [(f"counts_{word}_{band}", "i8") for word, _ in KINDS]
        dtype += [(f"area_{word}_{band}", "f8") for word, _ in KINDS]
    table = np.zeros(len(edges) - 1, dtype)
    table["depthlo"] = edges[:-1]
    table["depthhi"] = edges[1:]
    return table


def brick_depth_counts(layout: ReleaseLayout, brick: str) -> BrickDepthCounts:
    """Histogram one brick's depth and galdepth maps over its primary pixels; write the counts.

    Bands are those with a ``depth`` map in the brick's coadd directory; each needs its
    ``galdepth`` map too.  Missing or unreadable maps raise ``InputFileError`` naming the file.
    """
    brick = checked_brick(brick)
    mask_path = layout.coadd_maskbits(brick)
    maskbits, mask_header = read_image(mask_path)
    primary = (np.asarray(maskbits).astype(np.int64) & _nprimary_bit(mask_header)) == 0
    bands = brick_bands(layout, brick)
    table = _empty_table(bands)
    pixarea = pixel_area_deg2(mask_header, mask_path)
    nrows = len(table)
    for band in bands:
        for word, kind in KINDS:
            path = layout.coadd(brick, kind, band)
            data, header = read_image(path)
            if data.shape != primary.shape:
                raise InputFileError(
                    f"{path}: shape {data.shape} differs from the maskbits map {primary.shape}"
                )
            mag = depth_mag(data[primary])
            mag = mag[np.isfinite(mag)]
            counts = np.bincount(bin_index(mag), minlength=nrows)[:nrows]
            table[f"counts_{word}_{band}"] = counts
            table[f"area_{word}_{band}"] = counts * pixel_area_deg2(header, path)
    header = [
        {"name": "BRICKNAM", "value": brick, "comment": "brick of these counts"},
        {"name": "BANDS", "value": "".join(bands), "comment": "bands with depth maps"},
        {"name": "NBRICKS", "value": 1, "comment": "bricks summed"},
        {"name": "NPIXPRIM", "value": int(primary.sum()), "comment": "primary pixels"},
        {"name": "AREA", "value": float(primary.sum()) * pixarea, "comment": "primary deg2"},
    ]
    path = layout.depth_counts(brick)
    _write_table(path, table, header)
    return BrickDepthCounts(brick=brick, path=str(path))


def _write_table(path: Path, table: npt.NDArray[np.void], header: list[dict[str, Any]]) -> None:
    import fitsio

    with atomic_path(path) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as out:
        out.write(table, header=header, extname=EXTNAME)


def read_depth_table(path: Path) -> tuple[npt.NDArray[np.void], dict[str, Any]]:
    """A depth table (per brick or release) and its header keys; ``InputFileError`` if bad."""
    import fitsio

    if not path.is_file():
        raise InputFileError(f"{path}: depth counts not found")
    try:
        with fitsio.FITS(str(path)) as f:
            table = f[EXTNAME].read()
            hdr = f[EXTNAME].read_header()
    except (OSError, ValueError, RuntimeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputFileError(f"{path}: unreadable or truncated depth table: {first}") from err
    edges = bin_edges()
    if len(table) != len(edges) - 1 or not np.allclose(table["depthlo"], edges[:-1], atol=1e-4):
        raise InputFileError(f"{path}: depth bins differ from {len(edges) - 1} fixed bins")
    keys = {k: hdr[k] for k in ("BANDS", "NBRICKS", "NPIXPRIM", "AREA") if k in hdr}
    return table, keys


def median_depth(table: npt.NDArray[np.void], column: str) -> float | None:
    """Area-weighted median depth (mag) of one area column, linear within the median's bin."""
    area = np.asarray(table[column], np.float64)
    total = area.sum()
    if total <= 0:
        return None
    cum = np.cumsum(area)
    i = int(np.searchsorted(cum, 0.5 * total))
    lo, hi = float(table["depthlo"][i]), float(table["depthhi"][i])
    if i == 0 or i == len(table) - 1:
        return lo if i else hi  # the median is in an open-ended row: report its inner edge
    frac = float((0.5 * total - cum[i - 1]) / area[i])
    return round(lo + frac * (hi - lo), 4)


def merge_depth_histogram(layout: ReleaseLayout, bricks: Sequence[str]) -> DepthHistogramResult:
    """Sum the bricks' counts into ``<dr>-depth.fits``; plot ``plots/depth-histogram.png``.

    Every brick must have its counts file (``brick_depth_counts``); bands missing in a brick
    count as no coverage there.
    """
    names = sorted({checked_brick(b) for b in bricks})
    total: npt.NDArray[np.void] | None = None
    bands: list[str] = []
    npix, area = 0, 0.0
    for brick in names:
        table, keys = read_depth_table(layout.depth_counts(brick))
        new = [c for c in table.dtype.names or () if c not in ("depthlo", "depthhi")]
        new_bands = sort_bands(
            [*bands, *(c.split("_", 2)[2] for c in new if c.startswith("counts_"))]
        )
        if total is None or new_bands != bands:
            grown = _empty_table(new_bands)
            if total is not None:
                for col in total.dtype.names or ():
                    grown[col] = total[col]
            total, bands = grown, new_bands
        for col in new:
            total[col] += table[col]
        npix += int(keys.get("NPIXPRIM", 0))
        area += float(keys.get("AREA", 0.0))
    if total is None:
        total = _empty_table([])
    med_psf = {b: m for b in bands if (m := median_depth(total, f"area_ptsrc_{b}")) is not None}
    med_gal = {b: m for b in bands if (m := median_depth(total, f"area_gal_{b}")) is not None}
    header: list[dict[str, Any]] = [
        {"name": "BANDS", "value": "".join(bands), "comment": "bands"},
        {"name": "NBRICKS", "value": len(names), "comment": "bricks summed"},
        {"name": "NPIXPRIM", "value": npix, "comment": "primary pixels"},
        {"name": "AREA", "value": area, "comment": "primary area, deg2"},
        {"name": "BINWIDTH", "value": BIN_WIDTH, "comment": "mag"},
    ]
    for b in bands:
        for key, med in (("MEDPSF", med_psf), ("MEDGAL", med_gal)):
            if b in med:
                header.append(
                    {"name": f"{key}_{b.upper()}", "value": med[b], "comment": "median 5sig mag"}
                )
    path = layout.depth_histogram
    _write_table(path, total, header)
    plot = layout.depth_histogram_plot
    plot_depth_histogram(total, bands, area, plot, title=f"{layout.dr} depth ({len(names)} bricks)")
    return DepthHistogramResult(
        path=str(path),
        plot=str(plot),
        nbricks=len(names),
        area_deg2=area,
        median_psfdepth=med_psf,
        median_galdepth=med_gal,
    )


BAND_COLOURS = {"u": "tab:purple", "g": "tab:green", "r": "tab:red", "i": "tab:orange"}
BAND_COLOURS.update({"z": "tab:brown", "Y": "tab:gray"})


def plot_depth_histogram(
    table: npt.NDArray[np.void], bands: Sequence[str], area: float, path: Path, title: str
) -> Path:
    """Differential (deg² per 0.1 mag) and cumulative (deg² deeper than m) area vs depth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo = np.asarray(table["depthlo"], np.float64)[1:-1]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True)
    covered = [lo[-1], lo[0]]
    for col, (word, label) in enumerate((("ptsrc", "point source"), ("gal", "galaxy (0.45″)"))):
        diff_ax, cum_ax = axes[0][col], axes[1][col]
        for band in bands:
            values = np.asarray(table[f"area_{word}_{band}"], np.float64)
            fine = values[1:-1]
            colour = BAND_COLOURS.get(band)
            diff_ax.step(lo, fine / BIN_WIDTH * 0.1, where="post", color=colour, label=band)
            deeper = np.cumsum(values[::-1])[::-1][1:-1]
            cum_ax.plot(lo, deeper, color=colour, label=band)
            nz = np.nonzero(fine > 0)[0]
            if len(nz):
                covered = [min(covered[0], lo[nz[0]]), max(covered[1], lo[nz[-1]] + BIN_WIDTH)]
        diff_ax.set_title(f"{label} 5σ depth")
        diff_ax.set_ylabel("area per 0.1 mag (deg²)")
        cum_ax.set_ylabel("area deeper than depth (deg²)")
        cum_ax.set_xlabel(f"{label} 5σ depth (AB mag)")
        if area > 0:
            cum_ax.axhline(area, color="k", lw=0.8, ls=":", label="primary area")
        for ax in (diff_ax, cum_ax):
            ax.grid(alpha=0.3)
            ax.legend(title="band", fontsize=8)
    if covered[0] < covered[1]:
        pad = 0.25
        axes[1][0].set_xlim(
            max(DEPTH_LO, math.floor(covered[0] - pad)), min(DEPTH_HI, covered[1] + pad)
        )
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
