"""The depth cut (optional, off by default as for DR6): per brick, only the CCDs it needs.

The algorithm is legacypipe's ``legacypipe/depthcut.py`` (``make_depth_cut``), on the CCD
tables alone:

* per brick, the candidate CCDs are those touching its 3600² image with ``ccd_cuts == 0`` in
  g, r, i, z; depth is tracked on a coarse grid of the brick (the brick WCS scaled by 0.1:
  360×360 pixels of 2.62″), over the pixels inside the brick's unique area;
* targets (5σ galaxy depth, AB) are g 24.0, r 23.4, i 23.0, z 22.5 plus a margin (legacypipe's
  default 0.5; production ``bin/depthcut.sh`` uses 1), met at the 2nd…100th percentiles of the
  unique area with 0.6 mag (below the 5th) and 0.3 mag (below the 10th) of slack; and 3
  exposures over 95% of the area;
* CCDs are taken greedily, best first by 1/(sig1·seeing²) times the mean still-missing depth
  under them; other CCDs of an exposure already taken are tried next; a CCD is kept if it
  deepens a percentile still short of its target, adds a needed exposure, or has a keep-listed
  PROPID; a band is done when every target is met.  ``max_gb_per_band`` caps the pixels kept.
* a CCD's galaxy depth uses the table's ``galnorm`` (legacypipe: ``galnorm_mean``, else the PSF
  model); when it is 0, a Gaussian PSF of the table's ``fwhm`` convolved with a 0.45″ round
  exponential galaxy is used instead (an approximation: no PSF model is read).

Outputs: ``depthcut/<bri>/ccds-<brick>.fits`` per brick (the candidate CCDs with
``overlapping``, ``passed_depth_cut`` and ``pixels_overlapping`` columns, written even when
empty so a rerun finds the brick done) and the merged table of CCDs kept by any brick,
``depthcut/survey-ccds-depthcut-<dr>.fits.gz`` (+ its kd-tree).  They sit in ``depthcut/``,
not beside the full tables, because legacypipe reads every ``survey-ccds*`` file of its survey
dir: :func:`prepare_depthcut_survey_dir` links the release's images, calibs and reference
files there, so ``runbrick --survey-dir <release>/depthcut`` uses the depth cut and
``--survey-dir <release>`` the full tables.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lsdr.survey.core import bricks as grid
from lsdr.survey.core.errors import UsageError
from lsdr.survey.core.fileio import atomic_path
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.tan import TanWcs
from lsdr.survey.pretractor.bricklist import ccd_footprints
from lsdr.survey.pretractor.ccdschema import SURVEY_CCDS_DTYPE
from lsdr.survey.pretractor.ccdtables import read_survey_ccds

log = logging.getLogger(__name__)

BASE_TARGET_DEPTH = {"g": 24.0, "r": 23.4, "i": 23.0, "z": 22.5, "y": 22.0}
"""DESI depth requirements (5σ galaxy, AB) before the margin."""
DEFAULT_MARGIN = 0.5
"""Margin added to the targets (legacypipe's default; DR11 production used 1)."""
TARGET_PERCENTILES = np.array([*range(2, 10), *range(10, 30, 5), *range(30, 101, 10)])
"""Percentiles of the brick's unique area whose depth must reach the target."""
TARGET_NEXP = 3
TARGET_NEXP_PCT = 95
COARSE = 10
"""The depth grid is the brick image binned by this factor."""
PIX_TO_GB = 10 / 1e9
"""Memory per CCD pixel (image, inverse variance, data quality), GB."""
DEPTHCUT_DTYPE = np.dtype(
    [
        *SURVEY_CCDS_DTYPE.descr,
        ("overlapping", "?"),
        ("passed_depth_cut", "?"),
        ("pixels_overlapping", ">i4"),
    ]
)
"""Per-brick output rows: survey-ccds columns and the depth cut's verdict."""


@dataclass(frozen=True)
class DepthCutResult:
    """What the depth cut wrote and kept."""

    table: Path
    kdtree: Path | None
    n_in: int
    """Distinct candidate CCDs over all bricks."""
    n_kept: int
    """Distinct CCDs kept by at least one brick (rows of ``table``)."""
    per_brick: dict[str, int]
    """Brick → CCDs it kept."""


@dataclass(frozen=True)
class _Grid:
    """The coarse depth grid of one brick."""

    wcs: TanWcs
    size: int
    unique: npt.NDArray[np.bool_]
    ra: npt.NDArray[np.float64]
    dec: npt.NDArray[np.float64]


def brick_grid(brick: grid.Brick, coarse: int = COARSE) -> _Grid:
    """The brick's 3600² TAN image binned by ``coarse``, and its unique-area pixels."""
    width = grid.BRICK_SIZE_PIX
    scale = grid.BRICK_PIXSCALE / 3600.0 * coarse
    size = width // coarse
    crpix = (width / 2 + 0.5 - 0.5) / coarse + 0.5
    wcs = TanWcs(brick.ra, brick.dec, crpix, crpix, -scale, 0.0, 0.0, scale)
    ys, xs = np.mgrid[1 : size + 1, 1 : size + 1]
    ra, dec = wcs.pixel_to_radec(xs.astype(np.float64), ys.astype(np.float64))
    in_ra = (ra >= brick.ra1) & (ra < brick.ra2)
    if brick.ra1 > brick.ra2:
        in_ra = (ra >= brick.ra1) | (ra < brick.ra2)
    unique = in_ra & (dec >= brick.dec1) & (dec < brick.dec2)
    return _Grid(wcs, size, unique, ra, dec)


def _gaussian_galnorm(fwhm_pix: float, pixscale: float) -> float:
    """Galaxy norm of a 0.45″ round exponential seen through a Gaussian PSF (approximation)."""
    sigma_psf = fwhm_pix / 2.35
    sigma_gal = 0.45 / 1.678 / pixscale  # exponential's half-light radius → Gaussian-ish σ
    sigma = math.hypot(sigma_psf, sigma_gal)
    return 1.0 / (2.0 * math.sqrt(math.pi) * sigma)


def _ccd_wcs(row: np.void) -> TanWcs:
    return TanWcs(*(float(row[k]) for k in ("crval1", "crval2", "crpix1", "crpix2")),
                  *(float(row[k]) for k in ("cd1_1", "cd1_2", "cd2_1", "cd2_2")))  # fmt: skip


def choose_ccds(
    ccds: np.ndarray,
    brick: grid.Brick,
    *,
    target_depth: Mapping[str, float],
    bands: Sequence[str] = ("g", "r", "i", "z"),
    keep_propids: Collection[str] = (),
    max_gb_per_band: float | None = None,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.int32]]:
    """legacypipe's greedy choice for one brick: (kept, overlapping, pixels overlapping)."""
    g = brick_grid(brick)
    n = len(ccds)
    unique = g.unique
    n_unique = int(unique.sum())
    nexp_npix = int(n_unique * float(TARGET_NEXP_PCT) / 100.0)
    ddepth = np.zeros(len(TARGET_PERCENTILES), np.float32)
    ddepth[TARGET_PERCENTILES < 10] = -0.3
    ddepth[TARGET_PERCENTILES < 5] = -0.6
    pixscale = 3600.0 * np.sqrt(
        np.abs(
            ccds["cd1_1"].astype(np.float64) * ccds["cd2_2"]
            - ccds["cd1_2"].astype(np.float64) * ccds["cd2_1"]
        )
    )
    seeing = ccds["fwhm"].astype(np.float64) * pixscale
    sig1 = ccds["sig1"].astype(np.float64)
    bands_of = np.char.strip(ccds["filter"].astype(bytes)).astype(str)
    propids = np.char.strip(ccds["propid"].astype(bytes)).astype(str)
    slices: list[tuple[slice, slice] | None] = []
    overlapping = np.zeros(n, bool)
    brick_corners_x = np.array([1.0, grid.BRICK_SIZE_PIX, grid.BRICK_SIZE_PIX, 1.0])
    brick_corners_y = np.array([1.0, 1.0, grid.BRICK_SIZE_PIX, grid.BRICK_SIZE_PIX])
    half, step = grid.BRICK_SIZE_PIX / 2 + 0.5, grid.BRICK_PIXSCALE / 3600.0
    bwcs = TanWcs(brick.ra, brick.dec, half, half, -step, 0.0, 0.0, step)
    brick_ra, brick_dec = bwcs.pixel_to_radec(brick_corners_x, brick_corners_y)
    npix = np.zeros(n, np.int32)
    wcses = [_ccd_wcs(row) for row in ccds]
    for i, row in enumerate(ccds):
        w, h = float(row["width"]), float(row["height"])
        rr, dd = wcses[i].pixel_to_radec(np.array([1.0, w, w, 1.0]), np.array([1.0, 1.0, h, h]))
        xx, yy = g.wcs.radec_to_pixel(rr, dd)
        top = g.size - 1
        x0, x1 = (int(np.round(np.clip(v, 0, top))) for v in (xx.min(), xx.max()))
        y0, y1 = (int(np.round(np.clip(v, 0, top))) for v in (yy.min(), yy.max()))
        if x0 == x1 or y0 == y1 or not unique[y0 : y1 + 1, x0 : x1 + 1].any():
            slices.append(None)
            continue
        overlapping[i] = True
        slices.append((slice(y0, y1 + 1), slice(x0, x1 + 1)))
        bx, by = wcses[i].radec_to_pixel(brick_ra, brick_dec)
        sx0, sx1 = np.clip([np.floor(bx.min()), np.ceil(bx.max())], 0, w)
        sy0, sy1 = np.clip([np.floor(by.min()), np.ceil(by.max())], 0, h)
        npix[i] = int((sx1 - sx0) * (sy1 - sy0))
    keep = np.zeros(n, bool)
    for band in bands:
        if band not in target_depth:
            continue
        targets = target_depth[band] + ddepth
        b_inds = np.array([i for i in np.flatnonzero(bands_of == band) if slices[i] is not None])
        if len(b_inds) == 0:
            continue
        nexp = np.zeros((g.size, g.size), np.int16)
        last_nexp = np.zeros_like(nexp)
        depthiv = np.zeros((g.size, g.size), np.float64)
        last_pcts = np.zeros(len(targets), np.float64)
        try_ccds: set[int] = {int(i) for i in b_inds if propids[i] in keep_propids}
        npix_band = 0
        while len(b_inds):
            if try_ccds:
                iccd = min(try_ccds)
                try_ccds.discard(iccd)
            else:
                depthmap = _depth_map(depthiv)
                value = np.zeros_like(depthiv)
                for d in targets[last_pcts < targets]:
                    value += unique * np.maximum(0.0, d - depthmap)
                ccdvalue = np.array([value[slices[i]].mean() for i in b_inds])
                with np.errstate(divide="ignore", invalid="ignore"):
                    metric = ccdvalue / (sig1[b_inds] * seeing[b_inds] ** 2)
                metric = np.where(np.isfinite(metric), metric, 0.0)
                iccd = int(b_inds[int(np.argmax(metric))])
            b_inds = b_inds[b_inds != iccd]
            covered = _coverage(wcses[iccd], ccds[iccd], g)
            if not (sig1[iccd] > 0 and np.isfinite(sig1[iccd])) or not covered.any():
                continue
            galnorm = float(ccds["galnorm"][iccd])
            if not galnorm > 0:
                galnorm = _gaussian_galnorm(float(ccds["fwhm"][iccd]), float(pixscale[iccd]))
            detiv = (galnorm / sig1[iccd]) ** 2
            depthiv[covered] += detiv
            nexp[covered] += 1
            pcts = np.percentile(_depth_map(depthiv)[unique], TARGET_PERCENTILES)
            kept_it = bool(np.any((pcts > last_pcts) & (last_pcts < targets)))
            if not kept_it:
                kept_it = bool(
                    np.any((nexp[unique] > last_nexp[unique]) & (last_nexp[unique] < TARGET_NEXP))
                )
            if propids[iccd] in keep_propids:
                kept_it = True
            same = b_inds[ccds["expnum"][b_inds] == ccds["expnum"][iccd]]
            try_ccds.update(int(i) for i in same)
            if not kept_it:
                depthiv[covered] -= detiv
                nexp[covered] -= 1
                continue
            if (
                max_gb_per_band is not None
                and (npix_band + npix[iccd]) * PIX_TO_GB > max_gb_per_band
            ):
                log.info(
                    "%s %s: next CCD would exceed %.1f GB", brick.brickname, band, max_gb_per_band
                )
                break
            npix_band += int(npix[iccd])
            keep[iccd] = True
            last_pcts = pcts
            last_nexp[:, :] = nexp
            if np.all(pcts >= targets) and np.sum(nexp[unique] >= TARGET_NEXP) >= nexp_npix:
                break
    return keep, overlapping, npix


def _depth_map(depthiv: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """5σ depth (AB) of a galaxy-detection inverse-variance map; 0 where there is no data."""
    out = np.zeros_like(depthiv)
    pos = depthiv > 0
    out[pos] = 22.5 - 2.5 * np.log10(5.0 / np.sqrt(depthiv[pos]))
    return out


def _coverage(wcs: TanWcs, row: np.void, g: _Grid) -> npt.NDArray[np.bool_]:
    """Coarse pixels whose centre falls on the CCD (nearest-pixel resampling's footprint)."""
    x, y = wcs.radec_to_pixel(g.ra, g.dec)
    return (
        (x >= 0.5) & (x < float(row["width"]) + 0.5) & (y >= 0.5) & (y < float(row["height"]) + 0.5)
    )


def depth_cut(
    layout: ReleaseLayout,
    bricks: Sequence[str],
    *,
    target_depth: dict[str, float] | None = None,
    margin: float = DEFAULT_MARGIN,
    bands: Sequence[str] = ("g", "r", "i", "z"),
    keep_propids: Collection[str] = (),
    max_gb_per_band: float | None = None,
    kdtree: bool = True,
) -> DepthCutResult:
    """Run the depth cut over ``bricks``; write per-brick tables, the merged table and kd-tree.

    ``target_depth`` (band → 5σ galaxy depth, AB) replaces legacypipe's targets; the
    ``margin`` is added only to the defaults.
    """
    targets = target_depth if target_depth is not None else {
        b: d + margin for b, d in BASE_TARGET_DEPTH.items()
    }  # fmt: skip
    if not bricks:
        raise UsageError("the depth cut needs at least one brick")
    chosen = [grid.brick_by_name(b) for b in bricks]
    ccds = read_survey_ccds(layout, kept_only=True)
    ccds = ccds[np.isin(np.char.strip(ccds["filter"]), [b.encode() for b in bands])]
    pairs: dict[int, list[int]] = {}
    if len(ccds):
        _, _, corner_ra, corner_dec = ccd_footprints(ccds)
        ccd_index, brickids = grid.bricks_touching_polygons(corner_ra, corner_dec)
        wanted = {b.brickid for b in chosen}
        for i, bid in zip(ccd_index.tolist(), brickids.tolist(), strict=True):
            if bid in wanted:
                pairs.setdefault(bid, []).append(i)
    kept_any = np.zeros(len(ccds), bool)
    seen = np.zeros(len(ccds), bool)
    per_brick: dict[str, int] = {}
    for brick in chosen:
        idx = np.array(sorted(pairs.get(brick.brickid, [])), np.int64)
        sub = ccds[idx]
        keep, overlapping, npix = choose_ccds(
            sub, brick, target_depth=targets, bands=bands,
            keep_propids=keep_propids, max_gb_per_band=max_gb_per_band,
        )  # fmt: skip
        out = np.zeros(len(sub), DEPTHCUT_DTYPE)
        for name in SURVEY_CCDS_DTYPE.names or ():
            out[name] = sub[name]
        out["overlapping"] = overlapping
        out["passed_depth_cut"] = keep
        out["pixels_overlapping"] = npix
        _write(layout.depthcut_ccds(brick.brickname), out)
        kept_any[idx[keep]] = True
        seen[idx] = True
        per_brick[brick.brickname] = int(keep.sum())
        log.info("%s: kept %d of %d CCDs", brick.brickname, int(keep.sum()), len(sub))
    merged = ccds[kept_any]
    table = _write(layout.survey_ccds_depthcut, merged)
    kd_path: Path | None = None
    if kdtree and len(merged):
        from lsdr.survey.pretractor.kdtree import write_ccds_kdtree

        kd_path = write_ccds_kdtree(merged, layout.survey_ccds_depthcut_kd)
    elif layout.survey_ccds_depthcut_kd.exists():
        layout.survey_ccds_depthcut_kd.unlink()
    prepare_depthcut_survey_dir(layout)
    return DepthCutResult(table, kd_path, int(seen.sum()), int(kept_any.sum()), per_brick)


def prepare_depthcut_survey_dir(layout: ReleaseLayout) -> Path:
    """Make ``depthcut/`` a survey dir: relative links to the release's images, calibs, refs."""
    top = layout.depthcut_dir
    top.mkdir(parents=True, exist_ok=True)
    for target in layout.depthcut_linked:
        name = target.name
        link = top / name
        if target.exists() and not link.is_symlink() and not link.exists():
            os.symlink(Path("..") / name, link)
    return top


def _write(path: Path, rows: np.ndarray) -> Path:
    import fitsio

    with atomic_path(path) as tmp:
        fitsio.write(str(tmp), rows, extname="CCDS", clobber=True)
    return path
