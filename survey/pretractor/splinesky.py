"""legacypipe's spline sky model: fit on a CCD, evaluate, write and read its calib files.

The model is the Tractor's ``SplineSky``: a bicubic interpolating spline through sky values on
a grid of control points (``xgrid``, ``ygrid``; 0-based pixel positions), built by the
"Blanton method": with half-box ``h = boxsize // 2`` there are ``nx = W // h + 2`` control
columns at ``x0 + h·(i − ½)`` (``x0`` centring the grid), and each holds the median of the
unmasked pixels within ``h`` of it (when at least a quarter of that box is unmasked; otherwise
the scalar fallback sky).  A file row holds ``skyclass`` (``tractor.splinesky.SplineSky``),
``gridw``, ``gridh``, ``xgrid``, ``ygrid``, ``gridvals`` (gridh × gridw), ``x0``, ``y0``,
``order`` plus legacypipe's provenance (``expnum``, ``ccdname``, ``plver``, ``plprocid``,
``procdate``, ``imgdsum``, ``legpipev``) and sky statistics (``sig1``, ``sky_mode``,
``sky_med``, ``sky_cmed``, ``sky_john``, ``sky_fmasked``, ``sky_p0`` … ``sky_p100``).  Values
are in the image's units (CP images: electrons/s).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.fileio import atomic_path
from lsdr.survey.pretractor.calibtable import read_ccd_row
from lsdr.survey.pretractor.psfex import CalibMeta

FloatArray = npt.NDArray[np.float64]

SKY_CLASS = "tractor.splinesky.SplineSky"
DEFAULT_BOXSIZE = 1024
"""legacypipe's ``splinesky_boxsize`` (pixels) for CP cameras."""
MIN_FRACTION = 0.25
"""A control point's box needs this fraction of unmasked pixels for its own median."""
REFINE_ITERATIONS = 3
"""Passes matching the spline to the box medians of its residuals (see ``fit_spline_sky``)."""
PERCENTILES = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)


@dataclass(frozen=True)
class SplineSkyModel:
    """A spline sky: control points and their values (image units), plus the sub-image offset."""

    xgrid: npt.NDArray[np.int32]
    ygrid: npt.NDArray[np.int32]
    gridvals: FloatArray
    """Shape (len(ygrid), len(xgrid))."""
    order: int = 3
    x0: int = 0
    y0: int = 0
    stats: dict[str, float] = field(default_factory=dict)

    def _spline(self) -> object:
        from scipy.interpolate import RectBivariateSpline

        return RectBivariateSpline(
            self.xgrid.astype(np.float64),
            self.ygrid.astype(np.float64),
            np.asarray(self.gridvals, np.float64).T,
            kx=self.order,
            ky=self.order,
        )

    def evaluate(self, x: npt.ArrayLike, y: npt.ArrayLike) -> FloatArray:
        """Sky at 0-based pixel coordinates, vectors ``x`` and ``y`` → grid (len(y), len(x))."""
        spl = self._spline()
        xs = np.asarray(x, np.float64) + self.x0
        ys = np.asarray(y, np.float64) + self.y0
        return np.asarray(spl(xs, ys).T, np.float64)  # type: ignore[operator]

    def image(self, shape: tuple[int, int]) -> npt.NDArray[np.float32]:
        """The sky model on a whole (H, W) image."""
        h, w = shape
        return self.evaluate(np.arange(w), np.arange(h)).astype(np.float32)


def control_grid(size: int, halfbox: int) -> npt.NDArray[np.int32]:
    """Control-point positions along one axis of ``size`` pixels (Blanton method layout)."""
    n = int(size // halfbox) + 2
    start = int((size - (n - 2) * halfbox) // 2)
    return (start + (halfbox * (np.arange(n) - 0.5)).astype(int)).astype(np.int32)


def choose_boxsize(shape: tuple[int, int], boxsize: int = DEFAULT_BOXSIZE) -> int:
    """legacypipe's box size for a CCD, shrunk for small images.

    Halved when the CCD is under 4 boxes across (legacypipe), then halved further until a
    bicubic spline has at least 4 control points per axis (small cut-outs).
    """
    if min(shape) / boxsize < 4:
        boxsize //= 2
    while boxsize > 16 and min(len(control_grid(s, boxsize // 2)) for s in shape) < 4:
        boxsize //= 2
    return boxsize


def _box_bounds(centre: int, half: int, size: int) -> tuple[int, int]:
    return max(0, centre - half), min(size, centre + half)


def _box_step(ny: int, nx: int) -> int:
    """Subsampling step of a box: every step-th pixel each way leaves ≥ ~16k pixels."""
    return max(1, int(np.sqrt(ny * nx / 16384.0)))


def _fill_missing(vals: FloatArray, valid: npt.NDArray[np.bool_], fallback: float) -> FloatArray:
    """Values of control points without enough good pixels: their measured neighbours' mean.

    Grown outwards from the measured points; the scalar ``fallback`` only when none is measured.
    """
    out = vals.copy()
    have = valid.copy()
    if not have.any():
        out[:] = fallback
        return out
    gh, gw = out.shape
    while not have.all():
        grown = have.copy()
        for iy, ix in zip(*np.nonzero(~have), strict=True):
            ylo, yhi, xlo, xhi = max(0, iy - 1), min(gh, iy + 2), max(0, ix - 1), min(gw, ix + 2)
            near = have[ylo:yhi, xlo:xhi]
            if near.any():
                out[iy, ix] = float(out[ylo:yhi, xlo:xhi][near].mean())
                grown[iy, ix] = True
        have = grown
    return out


def fit_spline_sky(
    image: npt.NDArray[np.floating],
    good: npt.NDArray[np.bool_],
    fallback: float,
    boxsize: int,
    refine: int = REFINE_ITERATIONS,
) -> SplineSkyModel:
    """Fit the spline sky through the median of the good pixels of each control box.

    legacypipe's Blanton method puts each box median at its control point, but the boxes of the
    outer control points (half outside the CCD) are centred elsewhere, so a sky gradient or
    curvature leaves the spline off at the edges; masking then empties those boxes and the
    scalar fallback makes it worse.  Here boxes with too few good pixels take their neighbours'
    values, and ``refine`` passes add each box's median residual (image − spline) to its
    control value, so the spline matches the data box by box (edges included).
    """
    h, w = image.shape
    half = boxsize // 2
    xgrid = control_grid(w, half)
    ygrid = control_grid(h, half)
    # Every step-th pixel each way (≥ ~16k pixels per full box): the same medians to well
    # below the noise, at a fraction of the cost.
    step = _box_step(2 * half, 2 * half)
    sub = np.asarray(image[::step, ::step], np.float64)
    subgood = good[::step, ::step]
    xs = np.arange(0, w, step, dtype=np.float64)
    ys = np.arange(0, h, step, dtype=np.float64)
    vals = np.full((len(ygrid), len(xgrid)), float(fallback))
    valid = np.zeros(vals.shape, bool)
    boxes: list[tuple[int, int, slice, slice]] = []
    for iy, yc in enumerate(ygrid):
        ylo, yhi = _box_bounds(int(yc), half, h)
        sy = slice(-(-ylo // step), -(-yhi // step))
        for ix, xc in enumerate(xgrid):
            xlo, xhi = _box_bounds(int(xc), half, w)
            sx = slice(-(-xlo // step), -(-xhi // step))
            sel = subgood[sy, sx]
            n = int(sel.sum())
            if n > 0 and n > MIN_FRACTION * sel.size:
                vals[iy, ix] = float(np.median(sub[sy, sx][sel]))
                valid[iy, ix] = True
                boxes.append((iy, ix, sy, sx))
    vals = _fill_missing(vals, valid, fallback)
    if min(vals.shape) < 4:
        refine = 0
    for _ in range(refine):
        resid = sub - SplineSkyModel(xgrid, ygrid, vals).evaluate(xs, ys)
        for iy, ix, sy, sx in boxes:
            vals[iy, ix] += float(np.median(resid[sy, sx][subgood[sy, sx]]))
    return SplineSkyModel(xgrid, ygrid, vals)


# ----------------------------------------------------------------------------------------------
# Files


def sky_row(model: SplineSkyModel, meta: CalibMeta) -> npt.NDArray[np.void]:
    """The model as one row of legacypipe's spline-sky table."""
    gh, gw = model.gridvals.shape
    stat_names = ["sig1", "sky_mode", "sky_med", "sky_cmed", "sky_john", "sky_fmasked"] + [
        f"sky_p{p}" for p in PERCENTILES
    ]
    dtype = [
        ("gridw", ">i8"),
        ("gridh", ">i8"),
        ("gridvals", ">f4", (gh, gw)),
        ("xgrid", ">i4", (gw,)),
        ("ygrid", ">i4", (gh,)),
        ("x0", ">i4"),
        ("y0", ">i4"),
        ("order", "u1"),
        ("skyclass", f"S{len(SKY_CLASS)}"),
        ("legpipev", f"S{max(len(meta.legpipev), 1)}"),
        ("plver", f"S{max(len(meta.plver), 1)}"),
        ("plprocid", f"S{max(len(meta.plprocid), 1)}"),
        ("procdate", f"S{max(len(meta.procdate), 1)}"),
        ("imgdsum", f"S{max(len(meta.imgdsum), 1)}"),
        ("templ_ver", ">i8"),
        ("templ_run", ">i8"),
        ("templ_scale", ">f4"),
        ("halo_zpt", ">f8"),
        ("blob_masked", "?"),
        ("sub_sga_ver", "S2"),
    ]
    dtype += [(name, ">f4") for name in stat_names]
    dtype += [("expnum", ">i8"), ("ccdname", f"S{max(len(meta.ccdname), 1)}")]
    row = np.zeros(1, dtype)
    row["gridw"] = gw
    row["gridh"] = gh
    row["gridvals"] = model.gridvals.astype(np.float32)
    row["xgrid"] = model.xgrid
    row["ygrid"] = model.ygrid
    row["x0"] = model.x0
    row["y0"] = model.y0
    row["order"] = model.order
    row["skyclass"] = SKY_CLASS
    for key in ("legpipev", "plver", "plprocid", "procdate", "imgdsum"):
        row[key] = getattr(meta, key)
    row["templ_ver"] = -1
    row["templ_run"] = -1
    row["sub_sga_ver"] = "  "
    for name in stat_names:
        row[name] = model.stats.get(name, 0.0)
    row["expnum"] = meta.expnum
    row["ccdname"] = meta.ccdname
    return row


def write_sky_table(path: Path, rows: npt.NDArray[np.void], meta: CalibMeta | None) -> Path:
    """Write spline-sky rows atomically (primary header: SKY class and provenance)."""
    import fitsio

    cards: list[dict[str, object]] = [{"name": "SKY", "value": SKY_CLASS}]
    if meta is not None:
        cards += [
            {"name": "EXPNUM", "value": meta.expnum},
            {"name": "PLVER", "value": meta.plver},
            {"name": "PLPROCID", "value": meta.plprocid},
            {"name": "PROCDATE", "value": meta.procdate},
        ]
    with atomic_path(path) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as fits:
        fits.write(None, header=cards)
        fits.write(rows, header=[{"name": "SKY", "value": SKY_CLASS}])
    return path


def write_splinesky(path: Path, model: SplineSkyModel, meta: CalibMeta) -> Path:
    """Write one CCD's sky as legacypipe's per-CCD spline-sky file."""
    return write_sky_table(path, sky_row(model, meta), meta)


def model_from_row(row: np.void, path: Path) -> SplineSkyModel:
    """A SplineSkyModel from a table row (zero padding of merged files removed)."""
    try:
        gw, gh = int(row["gridw"]), int(row["gridh"])
        stats = {
            name: float(row[name])
            for name in (row.dtype.names or ())
            if name == "sig1" or name.startswith("sky_")
        }
        return SplineSkyModel(
            xgrid=np.asarray(row["xgrid"], np.int32)[:gw],
            ygrid=np.asarray(row["ygrid"], np.int32)[:gh],
            gridvals=np.asarray(row["gridvals"], np.float64)[:gh, :gw],
            order=int(row["order"]),
            x0=int(row["x0"]),
            y0=int(row["y0"]),
            stats=stats,
        )
    except (KeyError, ValueError) as err:
        raise InputFileError(f"{path}: not a spline-sky table ({err})") from err


def as_stored(model: SplineSkyModel, meta: CalibMeta) -> SplineSkyModel:
    """The model as its file holds it (float32 grid and statistics), as a later run reads it.

    The run that fits a sky uses this, so it measures with the same numbers as every rerun
    that reads the calib back, and their tables come out byte-identical (early cutoff).
    """
    return model_from_row(sky_row(model, meta)[0], Path("<in memory>"))


def read_splinesky(path: Path, expnum: int, ccdname: str) -> SplineSkyModel:
    """Read the sky of CCD ``ccdname`` of exposure ``expnum`` from a per-CCD or merged file."""
    return model_from_row(read_ccd_row(path, expnum, ccdname, "spline-sky table"), path)
