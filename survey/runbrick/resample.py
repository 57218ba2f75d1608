"""Resampling a tim onto the brick's TAN grid: Lanczos-3 for pixels, nearest pixel for weights.

As legacypipe's ``resample_with_wcs``: the CCD coordinates of brick pixels are computed exactly
on a coarse grid (every ``GRID_STEP`` pixels) and interpolated in between with a cubic spline
(TAN to TAN is smooth), the image is interpolated with a normalised Lanczos-3 kernel and the
inverse variance taken from the nearest CCD pixel.  Brick pixels whose Lanczos footprint leaves
the cut-out get no data; a pixel whose four nearest CCD pixels include a masked one gets zero
weight (so cosmic-ray edges do not ring into the coadd).

Images are per pixel, so when the CCD's pixels differ in size from the brick's (the synthetic
survey's binned cameras) the resampled image is scaled by the pixel-area ratio
``s = (brick pixscale / CCD pixscale)²`` and its inverse variance by ``1/s²``; that keeps the
flux of a source unchanged.  The rows are processed in chunks so
memory stays a few times the output size.

``resample_tim`` is the fast path (about 6× faster on a full brick): the CCD coordinates are
bilinear between exact nodes every ``GRID_STEP`` pixels (the TAN→TAN curvature keeps that
within ~1e-6 pixel), the Lanczos weights need one sine and one cosine per pixel and axis
(``fast_lanczos_weights``) and the 36 taps are gathered into preallocated float32 buffers.
``resample_tim_reference`` is the first implementation (spline coordinates, float64 sinc
weights); the tests pin the two together (images to 1e-6 of the peak, invvar bit for bit but
for pixels sitting on a rounding edge).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from lsdr.survey.runbrick.types import BrickGeometry, Tim

GRID_STEP = 16
"""Brick pixels between exactly projected coordinates."""
CHUNK_ROWS = 128
"""Brick rows resampled at once."""
LANCZOS_ORDER = 3


@dataclass
class Resampled:
    """One tim on the brick grid, within the brick slice ``[y0:y1, x0:x1]``."""

    tim_index: int
    band: str
    y0: int
    y1: int
    x0: int
    x1: int
    image: npt.NDArray[np.float32]
    """Nanomaggies per brick pixel (0 where there is no data)."""
    invvar: npt.NDArray[np.float32]
    """1/nanomaggies² per brick pixel (0 where there is no data)."""
    area_ratio: float
    """s = (brick pixel area)/(CCD pixel area); CCD-pixel invvar = invvar · s²."""
    extras: list[npt.NDArray[np.float32]] = field(default_factory=list)
    """Other per-tim images (e.g. models) resampled the same way."""

    @property
    def slices(self) -> tuple[slice, slice]:
        """The brick-grid slices this cut-out covers."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)


def lanczos_weights(frac: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Normalised Lanczos-3 weights, shape (6, n), for taps at floor(u)−2 … floor(u)+3."""
    taps = np.arange(-LANCZOS_ORDER + 1, LANCZOS_ORDER + 1, dtype=np.float64)
    d = frac[None, :] - taps[:, None]
    w = np.sinc(d) * np.sinc(d / LANCZOS_ORDER)
    w /= w.sum(axis=0, keepdims=True)
    return w


def brick_bbox(tim: Tim, geom: BrickGeometry) -> tuple[int, int, int, int] | None:
    """0-based ``(x0, x1, y0, y1)`` of brick pixels the tim's cut-out may cover, or None."""
    h, w = tim.shape
    cx = np.array([0.5, w + 0.5, w + 0.5, 0.5, (w + 1) / 2, 0.5, w + 0.5, (w + 1) / 2])
    cy = np.array([0.5, 0.5, h + 0.5, h + 0.5, 0.5, (h + 1) / 2, (h + 1) / 2, h + 0.5])
    ra, dec = tim.wcs.pixel_to_radec(cx + tim.x0, cy + tim.y0)
    bx, by = geom.wcs().radec_to_pixel(ra, dec)
    x0 = max(0, int(np.floor(bx.min() - 1.5)))
    y0 = max(0, int(np.floor(by.min() - 1.5)))
    x1 = min(geom.width, int(np.ceil(bx.max())))
    y1 = min(geom.height, int(np.ceil(by.max())))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, x1, y0, y1


def _grid(lo: int, hi: int) -> npt.NDArray[np.float64]:
    g = np.arange(lo, hi, GRID_STEP, dtype=np.float64)
    if g[-1] != hi - 1:
        g = np.append(g, hi - 1)
    if len(g) < 4:
        g = np.linspace(lo, hi - 1, 4) if hi - lo >= 4 else g
    return g


def node_coordinates(
    tim: Tim,
    geom: BrickGeometry,
    gx: npt.NDArray[np.float64],
    gy: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Exact 0-based cut-out coordinates (u, v) of the brick-pixel nodes gx × gy (via RA/Dec)."""
    xx, yy = np.meshgrid(gx, gy)
    ra, dec = geom.wcs().pixel_to_radec(xx + 1.0, yy + 1.0)
    cx, cy = tim.wcs.radec_to_pixel(ra, dec)
    return cx - 1.0 - tim.x0, cy - 1.0 - tim.y0


def tim_coordinates(
    tim: Tim, geom: BrickGeometry, bbox: tuple[int, int, int, int]
) -> Iterator[tuple[int, npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
    """Per chunk of brick rows: (first row, u, v) = 0-based cut-out coordinates of the pixels."""
    from scipy.interpolate import RectBivariateSpline

    x0, x1, y0, y1 = bbox
    gx, gy = _grid(x0, x1), _grid(y0, y1)
    u_grid, v_grid = node_coordinates(tim, geom, gx, gy)
    ky, kx = min(3, len(gy) - 1), min(3, len(gx) - 1)
    xs = np.arange(x0, x1, dtype=np.float64)
    if kx < 1 or ky < 1:
        for row in range(y0, y1):
            ra1, dec1 = geom.wcs().pixel_to_radec(xs + 1.0, np.full_like(xs, row + 1.0))
            u1, v1 = tim.wcs.radec_to_pixel(ra1, dec1)
            yield row, (u1 - 1.0 - tim.x0)[None, :], (v1 - 1.0 - tim.y0)[None, :]
        return
    su = RectBivariateSpline(gy, gx, u_grid, kx=ky, ky=kx)
    sv = RectBivariateSpline(gy, gx, v_grid, kx=ky, ky=kx)
    for r0 in range(y0, y1, CHUNK_ROWS):
        rows = np.arange(r0, min(y1, r0 + CHUNK_ROWS), dtype=np.float64)
        yield r0, su(rows, xs), sv(rows, xs)


def resample_tim_reference(
    tim: Tim,
    geom: BrickGeometry,
    tim_index: int = -1,
    extra_images: Sequence[npt.NDArray[np.float32]] = (),
) -> Resampled | None:
    """The first, straightforward implementation of ``resample_tim``, kept as its reference.

    Cubic-spline coordinates, float64 sinc weights, a fresh array per tap; the tests pin the
    fast path to it and ``bench/bench_coadds.py`` times against it.
    """
    placed = _placement(tim, geom)
    if placed is None:
        return None
    bbox, area_ratio, good = placed
    x0, x1, y0, y1 = bbox
    h, w = tim.shape
    sources = [np.where(good, tim.image, np.float32(0.0)).astype(np.float32).ravel()]
    sources += [np.where(good, e, np.float32(0.0)).astype(np.float32).ravel() for e in extra_images]
    ivflat = tim.invvar.ravel()
    goodflat = good.ravel()
    outs = [np.zeros((y1 - y0, x1 - x0), np.float32) for _ in sources]
    oiv = np.zeros((y1 - y0, x1 - x0), np.float32)
    lo = LANCZOS_ORDER - 1
    for r0, u, v in tim_coordinates(tim, geom, bbox):
        nr = u.shape[0]
        uf, vf = u.ravel(), v.ravel()
        ok = np.isfinite(uf) & np.isfinite(vf)
        ix = np.floor(np.where(ok, uf, -100.0)).astype(np.int64)
        iy = np.floor(np.where(ok, vf, -100.0)).astype(np.int64)
        ok &= (ix >= lo) & (ix + LANCZOS_ORDER < w) & (iy >= lo) & (iy + LANCZOS_ORDER < h)
        if not ok.any():
            continue
        sel = np.nonzero(ok)[0]
        ixs, iys = ix[sel], iy[sel]
        wx = lanczos_weights(uf[sel] - ixs).astype(np.float32)
        wy = lanczos_weights(vf[sel] - iys).astype(np.float32)
        base = iys * w + ixs
        # Nearest-pixel weight, zeroed when any of the four bilinear neighbours is masked.
        near = np.rint(vf[sel]).astype(np.int64) * w + np.rint(uf[sel]).astype(np.int64)
        iv = ivflat[near]
        for off in (0, 1, w, w + 1):
            iv = np.where(goodflat[base + off], iv, np.float32(0.0))
        for src, out in zip(sources, outs, strict=True):
            acc = np.zeros(len(sel), np.float32)
            for j in range(2 * LANCZOS_ORDER):
                row = np.zeros(len(sel), np.float32)
                rbase = base + (j - lo) * w
                for k in range(2 * LANCZOS_ORDER):
                    row += wx[k] * src[rbase + (k - lo)]
                acc += wy[j] * row
            block = np.zeros(nr * (x1 - x0), np.float32)
            block[sel] = acc * np.float32(area_ratio)
            out[r0 - y0 : r0 - y0 + nr] = block.reshape(nr, x1 - x0)
        block = np.zeros(nr * (x1 - x0), np.float32)
        block[sel] = iv / np.float32(area_ratio**2)
        oiv[r0 - y0 : r0 - y0 + nr] = block.reshape(nr, x1 - x0)
    for out in outs:
        out[oiv == 0] = 0.0
    return _resampled(tim_index, tim.band, (y0, y1, x0, x1), outs, oiv, float(area_ratio))


def _placement(
    tim: Tim, geom: BrickGeometry
) -> tuple[tuple[int, int, int, int], float, npt.NDArray[np.bool_]] | None:
    """Where a tim lands on the brick (x0, x1, y0, y1), its pixel-area ratio, its good pixels.

    None when it does not overlap the brick.
    """
    bbox = brick_bbox(tim, geom)
    if bbox is None:
        return None
    return bbox, (geom.pixscale / tim.wcs.pixscale) ** 2, tim.invvar > 0


def _resampled(
    tim_index: int,
    band: str,
    box: tuple[int, int, int, int],
    outs: list[npt.NDArray[np.float32]],
    invvar: npt.NDArray[np.float32],
    area_ratio: float,
) -> Resampled:
    """The :class:`Resampled` of a tim: its box (y0, y1, x0, x1) of the brick, its planes."""
    y0, y1, x0, x1 = box
    return Resampled(
        tim_index=tim_index,
        band=band,
        y0=y0,
        y1=y1,
        x0=x0,
        x1=x1,
        image=outs[0],
        invvar=invvar,
        area_ratio=area_ratio,
        extras=outs[1:],
    )


def _axis_grid(lo: int, hi: int) -> npt.NDArray[np.float64]:
    """Coarse grid nodes over ``[lo, hi)``: every ``GRID_STEP`` pixels plus the end ``hi``."""
    return np.append(np.arange(lo, hi, GRID_STEP, dtype=np.float64), float(hi))


def _linear_stencil(
    grid: npt.NDArray[np.float64], lo: int, hi: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """Per pixel in ``[lo, hi)``: the grid interval index and the fraction along it."""
    xs = np.arange(lo, hi, dtype=np.float64)
    idx = np.minimum(np.searchsorted(grid, xs, side="right") - 1, len(grid) - 2)
    frac = (xs - grid[idx]) / (grid[idx + 1] - grid[idx])
    return idx.astype(np.intp), frac


def fast_coordinates(
    tim: Tim, geom: BrickGeometry, bbox: tuple[int, int, int, int]
) -> Iterator[tuple[int, npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
    """As ``tim_coordinates``, bilinear between exact nodes (TAN→TAN: error ≪ 0.01 pixel)."""
    x0, x1, y0, y1 = bbox
    gx, gy = _axis_grid(x0, x1), _axis_grid(y0, y1)
    grids = node_coordinates(tim, geom, gx, gy)
    ix, tx = _linear_stencil(gx, x0, x1)
    iy, ty = _linear_stencil(gy, y0, y1)
    for r0 in range(y0, y1, CHUNK_ROWS):
        r1 = min(y1, r0 + CHUNK_ROWS)
        j, t = iy[r0 - y0 : r1 - y0], ty[r0 - y0 : r1 - y0, None]
        out = []
        for g in grids:
            rows = g[j] * (1.0 - t) + g[j + 1] * t
            out.append(rows[:, ix] * (1.0 - tx) + rows[:, ix + 1] * tx)
        yield r0, out[0], out[1]


_TAPS = np.arange(-LANCZOS_ORDER + 1, LANCZOS_ORDER + 1)
_SIGN = np.where(_TAPS % 2 == 0, 1.0, -1.0)
_SC = (_SIGN * np.cos(np.pi * _TAPS / LANCZOS_ORDER)).astype(np.float32)
_SS = (_SIGN * np.sin(np.pi * _TAPS / LANCZOS_ORDER)).astype(np.float32)
_TINY = 2.0**-40
"""Fractions below this are taken as 0 (their off-centre weights are < 1e-11)."""


def fast_lanczos_weights(frac: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """``lanczos_weights`` in float32 with one sine and one cosine per pixel, not twelve sines.

    With d = f − t: sin(πd) = (−1)ᵗ sin(πf) and sin(πd/3) = sin(πf/3)cos(πt/3) −
    cos(πf/3)sin(πt/3); sin(πf) and 3/π² are common to the six taps and cancel in the
    normalisation, leaving (−1)ᵗ(…)/d².  f ≈ 0 (d = 0 at the centre tap) is exactly one-hot.
    """
    f = np.minimum(np.asarray(frac, np.float32), np.float32(1.0 - 2.0**-24))
    zero = f < _TINY
    f[zero] = 0.5
    a = f * np.float32(np.pi / LANCZOS_ORDER)
    s, c = np.sin(a), np.cos(a)
    w = np.empty((len(_TAPS), len(f)), np.float32)
    d = np.empty_like(f)
    for k, tap in enumerate(_TAPS):
        np.subtract(f, np.float32(tap), out=d)
        np.multiply(d, d, out=d)
        np.multiply(s, _SC[k], out=w[k])
        np.multiply(c, _SS[k], out=a)
        w[k] -= a
        w[k] /= d
    w /= w.sum(axis=0, keepdims=True)
    if zero.any():
        w[:, zero] = (_TAPS == 0)[:, None]
    return w


def resample_tim(
    tim: Tim,
    geom: BrickGeometry,
    tim_index: int = -1,
    extra_images: Sequence[npt.NDArray[np.float32]] = (),
) -> Resampled | None:
    """Resample a tim (and optional same-shape images, e.g. its model) onto the brick grid.

    The same sampling as ``resample_tim_reference`` (to float32 rounding): coordinates
    bilinear between exact nodes, Lanczos weights from two sines per pixel, the 36 taps gathered
    into preallocated buffers.
    """
    placed = _placement(tim, geom)
    if placed is None:
        return None
    bbox, area_ratio, good = placed
    x0, x1, y0, y1 = bbox
    h, w = tim.shape
    zero32 = np.float32(0.0)
    sources = [np.where(good, tim.image, zero32).astype(np.float32, copy=False).ravel()]
    sources += [
        np.where(good, e, zero32).astype(np.float32, copy=False).ravel() for e in extra_images
    ]
    ivflat = tim.invvar.ravel()
    # A pixel has weight only if its four bilinear neighbours are all unmasked.
    good4 = good.copy()
    good4[:, :-1] &= good[:, 1:]
    good4[:-1, :] &= good4[1:, :]
    good4flat = good4.ravel()
    nx = x1 - x0
    outs = [np.zeros((y1 - y0, nx), np.float32) for _ in sources]
    oiv = np.zeros((y1 - y0, nx), np.float32)
    lo = LANCZOS_ORDER - 1
    ntap = 2 * LANCZOS_ORDER
    scale = np.float32(area_ratio)
    ivscale = np.float32(area_ratio**2)
    for r0, u, v in fast_coordinates(tim, geom, bbox):
        nr = u.shape[0]
        uf, vf = u.ravel(), v.ravel()
        fu, fv = np.floor(uf), np.floor(vf)
        ok = (fu >= lo) & (fu + LANCZOS_ORDER < w) & (fv >= lo) & (fv + LANCZOS_ORDER < h)
        sel = np.flatnonzero(ok)
        if len(sel) == 0:
            continue
        ixs, iys = fu[sel].astype(np.intp), fv[sel].astype(np.intp)
        wx = fast_lanczos_weights(uf[sel] - fu[sel])
        wy = fast_lanczos_weights(vf[sel] - fv[sel])
        base = iys * w + ixs
        near = np.rint(vf[sel]).astype(np.intp) * w + np.rint(uf[sel]).astype(np.intp)
        iv = np.where(good4flat[base], ivflat[near], zero32)
        n = len(sel)
        corner = base - (lo * w + lo)
        taps = np.empty((ntap, n), np.float32)
        for src, out in zip(sources, outs, strict=True):
            acc = np.zeros(n, np.float32)
            for j in range(ntap):
                for k in range(ntap):
                    np.take(src[j * w + k :], corner, out=taps[k])
                acc += wy[j] * np.einsum("kn,kn->n", wx, taps)
            acc *= scale
            acc[iv == 0] = 0.0
            out[r0 - y0 : r0 - y0 + nr].ravel()[sel] = acc
        oiv[r0 - y0 : r0 - y0 + nr].ravel()[sel] = iv / ivscale
    return _resampled(tim_index, tim.band, (y0, y1, x0, x1), outs, oiv, float(area_ratio))
