"""The Legacy Surveys brick grid: names, ids, bounds, lookups and CCD overlap.

The grid is desiutil's ``Bricks`` (brick size 0.25°), which legacypipe reads from
``survey-bricks.fits.gz``: 721 rows of constant Dec, an even number of bricks per row chosen so
that bricks are about 0.25° wide, one brick at each pole.  Every quantity is computed here the
way that algorithm does, so names, ids and bounds equal legacypipe's (tested against the real
tables shipped with legacypipe's test data).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.errors import BrickNameError, RegionError

BRICK_SIZE = 0.25
"""Height of a brick row, degrees."""
NROWS = 721
"""Number of brick rows from Dec −90 to +90 (centres every 0.25°)."""
BRICK_PIXSCALE = 0.262
"""Pixel scale of a brick image, arcsec/pixel (legacypipe's default)."""
BRICK_SIZE_PIX = 3600
"""Width and height of a brick image, pixels (legacypipe's default ``-W``/``-H``)."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_NAME_RE = re.compile(r"^(\d{4})([pm])(\d{3})$")
_CUSTOM_RE = re.compile(r"^custom-\d{6}[pm]\d{5}$")


def _row_tables() -> tuple[FloatArray, IntArray, IntArray]:
    """Centre Dec, bricks per row and the brickid offset of every row."""
    center_dec = np.arange(-90.0, 90.0 + BRICK_SIZE / 2, BRICK_SIZE)
    ncol = np.empty(NROWS, np.int64)
    for row, dec in enumerate(center_dec):
        edge = math.radians(abs(float(dec)) - BRICK_SIZE / 2)
        ncol[row] = int(math.ceil(360.0 / BRICK_SIZE * math.cos(edge) / 2) * 2)
    ncol[0] = ncol[-1] = 1
    offset = np.concatenate([[0], np.cumsum(ncol)[:-1]]).astype(np.int64)
    return center_dec, ncol, offset


CENTER_DEC, NCOL, ROW_OFFSET = _row_tables()
NBRICKS = int(NCOL.sum())
"""Number of bricks on the sky (662,174)."""


def _ra_center(col: npt.ArrayLike, ncol: npt.ArrayLike) -> FloatArray:
    """Centre RA of column ``col`` in a row of ``ncol`` bricks (pole rows sit at RA 180)."""
    c = np.asarray(col, np.float64)
    n = np.asarray(ncol, np.float64)
    return np.asarray((c + 0.5) * 360.0 / n, np.float64)


def format_brickname(ra: float, dec: float) -> str:
    """Brick name for a brick centre, e.g. ``1804p325`` (legacypipe's formatting)."""
    sign = "p" if dec >= 0 else "m"
    return ("%07.0f" % (ra * 1e4))[:4] + sign + ("%06.0f" % (abs(dec) * 1e4))[:3]


@dataclass(frozen=True, slots=True)
class Brick:
    """One brick of the grid, with legacypipe's ``survey-bricks`` columns."""

    brickname: str
    brickid: int
    brickq: int
    brickrow: int
    brickcol: int
    ra: float
    dec: float
    ra1: float
    ra2: float
    dec1: float
    dec2: float

    @property
    def bri(self) -> str:
        """The three-character directory prefix of the brick's outputs (``tractor/<bri>/``)."""
        return self.brickname[:3]

    def contains(self, ra: float, dec: float) -> bool:
        """Whether (RA, Dec) lies in the brick's unique area (legacypipe's BRICK_PRIMARY)."""
        in_dec = self.dec1 <= dec < self.dec2 or (self.dec2 == 90.0 and dec == 90.0)
        return in_dec and self.ra1 <= ra % 360.0 < self.ra2


def brick_at(row: int, col: int) -> Brick:
    """The brick at a grid row and column."""
    if not 0 <= row < NROWS:
        raise RegionError(f"brick row {row} is outside 0..{NROWS - 1}")
    n = int(NCOL[row])
    if not 0 <= col < n:
        raise RegionError(f"brick column {col} is outside 0..{n - 1} in row {row}")
    cdec = float(CENTER_DEC[row])
    ra = float(_ra_center(col, n))
    return Brick(
        brickname=format_brickname(ra, cdec),
        brickid=int(ROW_OFFSET[row]) + col + 1,
        brickq=col % 2 + 2 * (row % 2),
        brickrow=row,
        brickcol=col,
        ra=ra,
        dec=cdec,
        ra1=col * 360.0 / n,
        ra2=(col + 1) * 360.0 / n,
        dec1=max(cdec - BRICK_SIZE / 2, -90.0),
        dec2=min(cdec + BRICK_SIZE / 2, 90.0),
    )


def check_radec(ra: npt.ArrayLike, dec: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Validate coordinates: RA in [0, 360), Dec in [−90, 90], all finite."""
    r = np.atleast_1d(np.asarray(ra, np.float64))
    d = np.atleast_1d(np.asarray(dec, np.float64))
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(d))):
        raise RegionError("RA and Dec must be finite numbers")
    if np.any(r < 0) or np.any(r >= 360):
        raise RegionError(f"RA {r[(r < 0) | (r >= 360)][0]:g} is outside [0, 360)")
    if np.any(d < -90) or np.any(d > 90):
        raise RegionError(f"Dec {d[(d < -90) | (d > 90)][0]:g} is outside [-90, 90]")
    return r, d


def rowcol_radec(ra: npt.ArrayLike, dec: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    """Grid row and column of the brick holding each (RA, Dec); vectorised."""
    r, d = check_radec(ra, dec)
    row = np.floor((d + 90.0 + BRICK_SIZE / 2) / BRICK_SIZE).astype(np.int64)
    row = np.clip(row, 0, NROWS - 1)
    # Rounding can put a point on a boundary into the neighbour (RA 24.5 / 360 · 1440 is
    # 97.999…): settle each with the very bounds ``brick_at`` gives the brick.
    row = np.where((d >= CENTER_DEC[row] + BRICK_SIZE / 2) & (row < NROWS - 1), row + 1, row)
    row = np.where((d < CENTER_DEC[row] - BRICK_SIZE / 2) & (row > 0), row - 1, row)
    n = NCOL[row]
    wrapped = r % 360.0
    col = np.minimum(np.floor(wrapped / 360.0 * n).astype(np.int64), n - 1)
    col = np.where((wrapped >= (col + 1) * 360.0 / n) & (col < n - 1), col + 1, col)
    col = np.where((wrapped < col * 360.0 / n) & (col > 0), col - 1, col)
    return row.astype(np.int64), col.astype(np.int64)


def brickid_radec(ra: npt.ArrayLike, dec: npt.ArrayLike) -> IntArray:
    """Brick ids (1..662174) of the bricks holding each (RA, Dec); vectorised."""
    row, col = rowcol_radec(ra, dec)
    return np.asarray(ROW_OFFSET[row] + col + 1, np.int64)


def brick_radec(ra: float, dec: float) -> Brick:
    """The brick holding one (RA, Dec)."""
    row, col = rowcol_radec(ra, dec)
    return brick_at(int(row[0]), int(col[0]))


def rowcol_brickid(brickid: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    """Grid row and column of brick ids; vectorised."""
    ids = np.atleast_1d(np.asarray(brickid, np.int64))
    if np.any(ids < 1) or np.any(ids > NBRICKS):
        raise RegionError(f"brick id must be within 1..{NBRICKS}")
    row = np.searchsorted(ROW_OFFSET, ids - 1, side="right") - 1
    return row.astype(np.int64), (ids - 1 - ROW_OFFSET[row]).astype(np.int64)


def brick_by_id(brickid: int) -> Brick:
    """The brick with a given brickid."""
    row, col = rowcol_brickid(brickid)
    return brick_at(int(row[0]), int(col[0]))


def validate_brickname(name: str) -> str:
    """Return ``name`` if it is a brick on the grid, else raise :class:`BrickNameError`.

    A brick name becomes part of output paths; this is the gate it passes first, so that a
    name such as ``../1804p325`` can never reach the file system.
    """
    brick_by_name(name)
    return name


def brick_by_name(name: str) -> Brick:
    """The brick called ``name`` (e.g. ``1804p325``); raises :class:`BrickNameError` if none."""
    if not isinstance(name, str):
        raise BrickNameError(f"brick name must be a string, not {type(name).__name__}")
    m = _NAME_RE.match(name)
    if m is None:
        raise BrickNameError(f"{name!r} is not a brick name (expected RRRR[p|m]DDD, e.g. 1804p325)")
    dec_digits = int(m.group(3)) / 10.0
    dec = dec_digits if m.group(2) == "p" else -dec_digits
    row = int(np.clip(math.floor((dec + 90.0 + BRICK_SIZE / 2) / BRICK_SIZE), 0, NROWS - 1))
    n = int(NCOL[row])
    ra_est = int(m.group(1)) / 10.0
    col_est = int(ra_est / 360.0 * n)
    for col in (col_est, col_est + 1, col_est - 1, col_est + 2):
        if 0 <= col < n:
            brick = brick_at(row, col)
            if brick.brickname == name:
                return brick
    raise BrickNameError(f"{name!r} is not a brick of the Legacy Surveys grid")


def is_custom_brickname(name: str) -> bool:
    """Whether ``name`` is a runbrick ``--radec`` brick (``custom-RRRRRR[p|m]DDDDD``)."""
    return bool(_CUSTOM_RE.match(name))


def checked_target(ra: float, dec: float) -> tuple[float, float]:
    """A ``--radec`` target as floats; RegionError (a UsageError) if RA ∉ [0, 360) or |Dec| > 90."""
    try:
        r, d = float(ra), float(dec)
    except (TypeError, ValueError) as err:
        raise RegionError(f"target RA, Dec ({ra!r}, {dec!r}) are not numbers") from err
    if not 0.0 <= r < 360.0:
        raise RegionError(f"target RA {ra!r} is outside [0, 360) degrees")
    if not -90.0 <= d <= 90.0:
        raise RegionError(f"target Dec {dec!r} is outside [-90, 90] degrees")
    return r, d


def custom_brickname(ra: float, dec: float) -> str:
    """runbrick's ``custom-%06i%s%05i`` name of a ``--radec`` target (1000·RA, m/p, 1000·|Dec|)."""
    r, d = checked_target(ra, dec)
    return f"custom-{int(1000 * r):06d}{'m' if d < 0 else 'p'}{int(1000 * abs(d)):05d}"


# ----------------------------------------------------------------------------------------------
# Regions


@dataclass(frozen=True, slots=True)
class RaDecBox:
    """An RA/Dec box; ``ra_min > ra_max`` means the box crosses RA 0/360."""

    ra_min: float
    ra_max: float
    dec_min: float
    dec_max: float

    def __post_init__(self) -> None:
        """Reject boxes that are not on the sky or are empty."""
        for label, value in (("ra_min", self.ra_min), ("ra_max", self.ra_max)):
            if not (math.isfinite(value) and 0.0 <= value <= 360.0):
                raise RegionError(f"{label} {value:g} is outside [0, 360]")
        for label, value in (("dec_min", self.dec_min), ("dec_max", self.dec_max)):
            if not (math.isfinite(value) and -90.0 <= value <= 90.0):
                raise RegionError(f"{label} {value:g} is outside [-90, 90]")
        if self.dec_min >= self.dec_max:
            raise RegionError(
                f"empty region: dec_min {self.dec_min:g} is not below dec_max {self.dec_max:g}"
            )
        if self.ra_min == self.ra_max:
            raise RegionError(f"empty region: ra_min equals ra_max ({self.ra_min:g})")

    @property
    def wraps(self) -> bool:
        """Whether the box crosses RA 0/360."""
        return self.ra_min > self.ra_max


def bricks_in_region(box: RaDecBox) -> list[Brick]:
    """Bricks whose centre lies in the box, edges included: queue_calibs' region cut.

    This is how legacypipe selects the bricks of a region (``B.ra >= rlo and B.ra <= rhi``,
    the same for Dec); the cookbook's RA 180–181, Dec 32–33 example gives its 15 bricks.
    """
    out = []
    for brick in bricks_overlapping_box(box):
        in_ra = (
            (brick.ra >= box.ra_min or brick.ra <= box.ra_max)
            if box.wraps
            else box.ra_min <= brick.ra <= box.ra_max
        )
        if in_ra and box.dec_min <= brick.dec <= box.dec_max:
            out.append(brick)
    return out


def bricks_overlapping_box(box: RaDecBox) -> list[Brick]:
    """Bricks whose bounds overlap the box (a brick touching only an edge is not included)."""
    rows = [
        row
        for row in range(NROWS)
        if min(CENTER_DEC[row] + BRICK_SIZE / 2, 90.0) > box.dec_min
        and max(CENTER_DEC[row] - BRICK_SIZE / 2, -90.0) < box.dec_max
    ]
    spans = [(box.ra_min, 360.0), (0.0, box.ra_max)] if box.wraps else [(box.ra_min, box.ra_max)]
    out: list[Brick] = []
    for row in rows:
        n = int(NCOL[row])
        cols: set[int] = set()
        for lo, hi in spans:
            if hi <= lo:
                continue
            first = math.floor(lo / 360.0 * n)
            last = math.ceil(hi / 360.0 * n) - 1
            cols.update(range(max(first, 0), min(last, n - 1) + 1))
        out.extend(brick_at(row, col) for col in sorted(cols))
    return out


# ----------------------------------------------------------------------------------------------
# Bricks touched by CCD footprints (queue_calibs --touching)


def _expand(starts: IntArray, counts: IntArray) -> tuple[IntArray, IntArray]:
    """For ranges [start, start+count) return (index of the range, value) for every member."""
    owner = np.repeat(np.arange(len(starts), dtype=np.int64), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    values = np.repeat(starts, counts) + (np.arange(int(counts.sum()), dtype=np.int64) - first)
    return owner, values


def _gnomonic(
    ra: FloatArray, dec: FloatArray, ra0: FloatArray, dec0: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Tangent-plane coordinates (degrees) of (ra, dec) about (ra0, dec0), and cos(distance)."""
    r, d, r0, d0 = (np.radians(v) for v in (ra, dec, ra0, dec0))
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(r - r0)
    safe = np.where(cosc > 1e-9, cosc, 1.0)
    xi = np.cos(d) * np.sin(r - r0) / safe
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(r - r0)) / safe
    return np.degrees(xi), np.degrees(eta), cosc


def _quads_intersect_square(x: FloatArray, y: FloatArray, half: float) -> npt.NDArray[np.bool_]:
    """Separating-axis test of convex quadrilaterals (rows of x, y) against [−h, h]²."""
    hit: npt.NDArray[np.bool_] = (x.max(axis=1) >= -half) & (x.min(axis=1) <= half)
    hit &= (y.max(axis=1) >= -half) & (y.min(axis=1) <= half)
    sq = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    for k in range(4):
        ex = x[:, (k + 1) % 4] - x[:, k]
        ey = y[:, (k + 1) % 4] - y[:, k]
        nx, ny = -ey, ex
        proj_q = nx[:, None] * x + ny[:, None] * y
        proj_s = nx[:, None] * sq[None, :, 0] + ny[:, None] * sq[None, :, 1]
        hit &= (proj_q.max(axis=1) >= proj_s.min(axis=1)) & (
            proj_s.max(axis=1) >= proj_q.min(axis=1)
        )
    return hit


def bricks_touching_polygons(
    corner_ra: npt.ArrayLike,
    corner_dec: npt.ArrayLike,
    width_pix: int = BRICK_SIZE_PIX,
    pixscale: float = BRICK_PIXSCALE,
) -> tuple[IntArray, IntArray]:
    """Bricks whose image footprint overlaps each CCD footprint (``queue_calibs --touching``).

    ``corner_ra``/``corner_dec`` have shape (N, 4): the four CCD corners in order around the
    CCD (ccds-annotated's ra0..ra3).  A brick's footprint is its legacypipe image, a square of
    ``width_pix`` pixels of ``pixscale`` arcsec about the brick centre on a TAN projection
    (slightly larger than the brick's RA/Dec bounds).  Returns (ccd index, brickid) pairs.
    """
    cra = np.atleast_2d(np.asarray(corner_ra, np.float64)) % 360.0
    cdec = np.atleast_2d(np.asarray(corner_dec, np.float64))
    if cra.shape != cdec.shape or cra.shape[1] != 4:
        raise ValueError("CCD corners must have shape (N, 4)")
    check_radec(cra.ravel(), cdec.ravel())
    half = width_pix / 2.0 * pixscale / 3600.0
    # Margin that holds any brick image whose centre is farther than this from every CCD edge.
    margin_dec = half * math.sqrt(2.0) + 1e-6
    ref = cra[:, :1]
    unwrapped = ref + ((cra - ref + 180.0) % 360.0 - 180.0)
    ra_lo, ra_hi = unwrapped.min(axis=1), unwrapped.max(axis=1)
    dec_lo = np.clip(cdec.min(axis=1) - margin_dec, -90.0, 90.0)
    dec_hi = np.clip(cdec.max(axis=1) + margin_dec, -90.0, 90.0)
    row_lo = np.clip(np.floor((dec_lo + 90.0 + BRICK_SIZE / 2) / BRICK_SIZE), 0, NROWS - 1)
    row_hi = np.clip(np.floor((dec_hi + 90.0 + BRICK_SIZE / 2) / BRICK_SIZE), 0, NROWS - 1)
    ccd_of_row, row = _expand(row_lo.astype(np.int64), (row_hi - row_lo + 1).astype(np.int64))
    # RA range of candidate bricks in each row, widened by the margin at that row's worst Dec.
    worst_dec = np.minimum(np.abs(CENTER_DEC[row]) + BRICK_SIZE, 90.0)
    cosd = np.cos(np.radians(worst_dec))
    near_pole = cosd < 0.02
    ra_margin = np.where(near_pole, 360.0, margin_dec / np.maximum(cosd, 1e-9))
    n = NCOL[row]
    col_lo = np.floor((ra_lo[ccd_of_row] - ra_margin) / 360.0 * n).astype(np.int64)
    col_hi = np.floor((ra_hi[ccd_of_row] + ra_margin) / 360.0 * n).astype(np.int64)
    count = np.minimum(col_hi - col_lo + 1, n)
    col_lo = np.where(count == n, 0, col_lo)
    pair_owner, col = _expand(col_lo, count)
    ccd = ccd_of_row[pair_owner]
    prow = row[pair_owner]
    col = col % NCOL[prow]
    bra = _ra_center(col, NCOL[prow])
    bdec = CENTER_DEC[prow]
    x, y, cosc = _gnomonic(cra[ccd], cdec[ccd], bra[:, None], bdec[:, None])
    ok = np.all(cosc > 1e-6, axis=1)
    ok[ok] = _quads_intersect_square(x[ok], y[ok], half)
    ids = ROW_OFFSET[prow] + col + 1
    pairs = np.unique(np.stack([ccd[ok], ids[ok]], axis=1), axis=0)
    return pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)


def ccd_corners_from_wcs(
    crval1: npt.ArrayLike,
    crval2: npt.ArrayLike,
    crpix1: npt.ArrayLike,
    crpix2: npt.ArrayLike,
    cd1_1: npt.ArrayLike,
    cd1_2: npt.ArrayLike,
    cd2_1: npt.ArrayLike,
    cd2_2: npt.ArrayLike,
    width: npt.ArrayLike,
    height: npt.ArrayLike,
) -> tuple[FloatArray, FloatArray]:
    """CCD corners (N, 4) from survey-ccds TAN WCS columns, at pixels (1,1),(1,H),(W,H),(W,1).

    This is the corner order of ccds-annotated's ra0..ra3, used when only survey-ccds exists.
    """
    w = np.atleast_1d(np.asarray(width, np.float64))
    h = np.atleast_1d(np.asarray(height, np.float64))
    px = np.stack([np.ones_like(w), np.ones_like(w), w, w], axis=1)
    py = np.stack([np.ones_like(h), h, h, np.ones_like(h)], axis=1)
    dx = px - np.atleast_1d(np.asarray(crpix1, np.float64))[:, None]
    dy = py - np.atleast_1d(np.asarray(crpix2, np.float64))[:, None]

    def col(v: npt.ArrayLike) -> FloatArray:
        return np.atleast_1d(np.asarray(v, np.float64))[:, None]

    xi = np.radians(col(cd1_1) * dx + col(cd1_2) * dy)
    eta = np.radians(col(cd2_1) * dx + col(cd2_2) * dy)
    ra0 = np.radians(col(crval1))
    dec0 = np.radians(col(crval2))
    denom = np.cos(dec0) - eta * np.sin(dec0)
    ra = ra0 + np.arctan2(xi, denom)
    dec = np.arctan2(np.sin(dec0) + eta * np.cos(dec0), np.hypot(xi, denom))
    return np.degrees(ra) % 360.0, np.degrees(dec)


# ----------------------------------------------------------------------------------------------
# The survey-bricks table


def all_bricks_columns() -> dict[str, npt.NDArray[np.generic]]:
    """Every brick of the grid as columns (brickname, brickid, …, dec2), in brickid order."""
    rows = np.repeat(np.arange(NROWS, dtype=np.int64), NCOL)
    cols = np.arange(NBRICKS, dtype=np.int64) - ROW_OFFSET[rows]
    n = NCOL[rows]
    ra = _ra_center(cols, n)
    dec = CENTER_DEC[rows]
    names = np.array([format_brickname(r, d) for r, d in zip(ra, dec, strict=True)], "S8")
    return {
        "brickname": names,
        "brickid": (np.arange(NBRICKS) + 1).astype(np.int32),
        "brickq": (cols % 2 + 2 * (rows % 2)).astype(np.int16),
        "brickrow": rows.astype(np.int32),
        "brickcol": cols.astype(np.int32),
        "ra": ra,
        "dec": dec,
        "ra1": cols * 360.0 / n,
        "ra2": (cols + 1) * 360.0 / n,
        "dec1": np.maximum(dec - BRICK_SIZE / 2, -90.0),
        "dec2": np.minimum(dec + BRICK_SIZE / 2, 90.0),
    }


def _brick_columns(bricks: Sequence[Brick]) -> dict[str, npt.NDArray[np.generic]]:
    """The bricks as ``survey-bricks`` columns (the dtypes of :func:`all_bricks_columns`)."""
    dtypes: dict[str, npt.DTypeLike] = {"brickname": "S8", "brickq": np.int16}
    dtypes |= dict.fromkeys(("brickid", "brickrow", "brickcol"), np.int32)
    return {
        name: np.asarray([getattr(b, name) for b in bricks], dtype=dtypes.get(name, np.float64))
        for name in BRICK_COLUMNS
    }


BRICK_COLUMNS = tuple(f.name for f in dataclasses.fields(Brick))
"""``survey-bricks``' columns in legacypipe's order: the fields of :class:`Brick`."""


def write_survey_bricks(path: Path, box: RaDecBox | None = None) -> Path:
    """Write ``survey-bricks.fits.gz`` (HDU 1, legacypipe's columns) atomically.

    The whole grid, or with ``box`` only the bricks overlapping it (a simulated survey's
    footprint: runbrick looks its brick up by name and its neighbours by position, and a
    table of a few hundred rows is written in milliseconds instead of seconds).
    """
    import fitsio

    from lsdr.survey.core.fileio import atomic_path

    columns = all_bricks_columns() if box is None else _brick_columns(bricks_overlapping_box(box))
    n = len(columns["brickname"])
    data = np.zeros(n, dtype=[(k, v.dtype) for k, v in columns.items()])
    for key, value in columns.items():
        data[key] = value
    with atomic_path(path) as tmp:
        fitsio.write(str(tmp), data, extname="BRICKS", clobber=True)
    return path


QUEUE_CLOSEST_RADIUS = 0.95 * (BRICK_SIZE + 0.262 * 2048 / 3600.0) / 2.0
"""queue_calibs' shortcut: a brick within this many degrees of a CCD centre touches it."""


def _unit_vectors(ra: FloatArray, dec: FloatArray) -> FloatArray:
    r, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=-1)


def bricks_touching_ccds(
    candidates: list[Brick],
    ccd_ra: npt.ArrayLike,
    ccd_dec: npt.ArrayLike,
    corner_ra: npt.ArrayLike,
    corner_dec: npt.ArrayLike,
) -> list[Brick]:
    """The candidate bricks that legacypipe's ``queue_calibs --touching`` would keep.

    A brick is kept when a CCD centre lies within :data:`QUEUE_CLOSEST_RADIUS` of the brick
    centre (queue_calibs' shortcut) or a CCD footprint overlaps the brick's 3600² image
    (``ccds_touching_wcs``).  Corners are the CCD pixel-edge corners, shape (N, 4).
    """
    from scipy.spatial import cKDTree

    if not candidates:
        return []
    cra = np.atleast_1d(np.asarray(ccd_ra, np.float64))
    cdec = np.atleast_1d(np.asarray(ccd_dec, np.float64))
    if len(cra) == 0:
        return []
    tree = cKDTree(_unit_vectors(cra, cdec))
    bra = np.array([b.ra for b in candidates])
    bdec = np.array([b.dec for b in candidates])
    chord = 2.0 * math.sin(math.radians(QUEUE_CLOSEST_RADIUS) / 2.0)
    near = np.array(
        [len(hits) > 0 for hits in tree.query_ball_point(_unit_vectors(bra, bdec), chord)]
    )
    _, touched_ids = bricks_touching_polygons(corner_ra, corner_dec)
    touched = set(touched_ids.tolist())
    return [b for b, n in zip(candidates, near, strict=True) if n or b.brickid in touched]
