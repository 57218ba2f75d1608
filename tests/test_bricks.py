"""The brick grid equals legacypipe's, and its lookups are consistent."""

from __future__ import annotations

import math
from pathlib import Path

import fitsio
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lsdr.survey.core import bricks as grid
from lsdr.survey.core.errors import BrickNameError, RegionError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "legacypipe-test"
REAL_TABLES = sorted(SHARED.glob("*/survey-bricks.fits.gz"))

# legacypipe's test vectors (name, id, row, col, q) from research/legacypipe-facts.md §1.
VECTORS = [
    ("1867p255", 473357, 462, 675, 1),
    ("1102p240", 465217, 456, 403, 1),
    ("2447p120", 400014, 408, 958, 0),
    ("0091p035", 350562, 374, 36, 0),
    ("1209p050", 359632, 380, 482, 0),
    ("3465p127", 404635, 411, 1353, 3),
    ("1773p595", 616029, 598, 361, 1),
    ("2173p350", 520765, 500, 713, 1),
    ("3521p002", 333216, 361, 1408, 2),
]

WORKED_EXAMPLE = [
    "1801p320", "1804p320", "1807p320", "1801p322", "1804p322", "1807p322", "1801p325",
    "1804p325", "1807p325", "1801p327", "1804p327", "1807p327", "1801p330", "1804p330",
    "1807p330",
]  # fmt: skip

radecs = st.tuples(
    st.floats(0.0, 360.0, exclude_max=True, allow_nan=False),
    st.floats(-90.0, 90.0, allow_nan=False),
)


def test_real_tables_are_present():
    """The shared legacypipe test data holds real survey-bricks tables to compare with."""
    assert len(REAL_TABLES) >= 7


@pytest.mark.parametrize("path", REAL_TABLES, ids=lambda p: p.parent.name)
def test_every_row_of_real_tables(path: Path):
    """Every row of legacypipe's survey-bricks tables is reproduced: name, ids exactly, bounds."""
    table = fitsio.read(str(path), ext=1)
    assert len(table) >= 1
    for row in table:
        name = row["brickname"].strip()
        name = name.decode() if isinstance(name, bytes) else name
        brick = grid.brick_by_name(name)
        assert brick.brickid == row["brickid"]
        assert brick.brickq == row["brickq"]
        assert (brick.brickrow, brick.brickcol) == (row["brickrow"], row["brickcol"])
        # Centres and Dec bounds are bit-exact; RA bounds agree to a few ULPs (1e-13 deg).
        assert (brick.ra, brick.dec, brick.dec1, brick.dec2) == (
            row["ra"],
            row["dec"],
            row["dec1"],
            row["dec2"],
        )
        assert brick.ra1 == pytest.approx(row["ra1"], abs=1e-12)
        assert brick.ra2 == pytest.approx(row["ra2"], abs=1e-12)
        assert grid.brick_by_id(int(row["brickid"])) == brick
        assert grid.brick_radec(float(row["ra"]), float(row["dec"])) == brick


@pytest.mark.parametrize(("name", "brickid", "row", "col", "q"), VECTORS)
def test_legacypipe_vectors(name: str, brickid: int, row: int, col: int, q: int):
    """legacypipe's own test bricks have the documented id, row, column and quadrant."""
    brick = grid.brick_by_name(name)
    assert (brick.brickid, brick.brickrow, brick.brickcol, brick.brickq) == (brickid, row, col, q)


def test_grid_size_and_unique_names():
    """The grid has 662,174 bricks with unique names, one brick at each pole."""
    columns = grid.all_bricks_columns()
    assert grid.NBRICKS == 662174
    assert len(np.unique(columns["brickname"])) == grid.NBRICKS
    assert grid.NCOL[0] == grid.NCOL[-1] == 1
    assert grid.NCOL[360] == 1440
    assert grid.brick_radec(12.0, 90.0).brickid == grid.NBRICKS
    assert grid.brick_radec(300.0, -90.0).brickid == 1


def test_missing_brick_is_rejected():
    """A name between two real bricks (1803p325) is not on the grid."""
    with pytest.raises(BrickNameError):
        grid.brick_by_name("1803p325")
    assert grid.brick_by_name("1801p325").brickname == "1801p325"


@pytest.mark.parametrize(
    "name", ["../1804p325", "1804p325/..", "/1804p325", "1804p32", "1804x325", "", "1804P325"]
)
def test_bad_brick_names(name: str):
    """Names that are paths or malformed raise BrickNameError before any path is built."""
    with pytest.raises(BrickNameError):
        grid.validate_brickname(name)


@settings(max_examples=300, deadline=None)
@given(radecs)
@example(radec=(24.5, 0.0))  # 24.5 / 360 · 1440 rounds to 97.999…: the edge of column 98
@example(radec=(180.0, 32.125))  # a row boundary
def test_point_lies_in_exactly_one_brick(radec: tuple[float, float]):
    """Every (RA, Dec) lies in its brick's bounds and in no neighbouring brick's bounds."""
    ra, dec = radec
    brick = grid.brick_radec(ra, dec)
    assert brick.contains(ra, dec)
    holders = 0
    for row in range(max(brick.brickrow - 1, 0), min(brick.brickrow + 2, grid.NROWS)):
        n = int(grid.NCOL[row])
        col = min(int(ra / 360.0 * n), n - 1)
        for c in {(col - 1) % n, col, (col + 1) % n}:
            holders += grid.brick_at(row, c).contains(ra, dec)
    assert holders == 1


@settings(max_examples=300, deadline=None)
@given(st.integers(1, grid.NBRICKS))
def test_centre_and_name_round_trip(brickid: int):
    """The brick at a brick's centre is itself, and its name and id round-trip."""
    brick = grid.brick_by_id(brickid)
    assert grid.brick_radec(brick.ra, brick.dec) == brick
    assert grid.brick_by_name(brick.brickname) == brick
    assert int(grid.brickid_radec(brick.ra, brick.dec)[0]) == brickid


def test_vectorised_lookup_matches_scalar():
    """brickid_radec over many points agrees with the one-point lookup."""
    rng = np.random.default_rng(3)
    ra = rng.uniform(0, 360, 2000)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, 2000)))
    ids = grid.brickid_radec(ra, dec)
    for r, d, i in zip(ra[:200], dec[:200], ids[:200], strict=True):
        assert grid.brick_radec(r, d).brickid == i


@pytest.mark.parametrize(
    ("ra", "dec"), [(-1.0, 0.0), (360.0, 0.0), (10.0, 90.5), (10.0, -91.0), (math.nan, 0.0)]
)
def test_bad_coordinates(ra: float, dec: float):
    """Coordinates off the sky raise RegionError."""
    with pytest.raises(RegionError):
        grid.brick_radec(ra, dec)


def _brute_overlap(box: grid.RaDecBox) -> set[str]:
    cols = grid.all_bricks_columns()
    dec_ok = (cols["dec2"] > box.dec_min) & (cols["dec1"] < box.dec_max)
    if box.wraps:
        ra_ok = (cols["ra2"] > box.ra_min) | (cols["ra1"] < box.ra_max)
    else:
        ra_ok = (cols["ra2"] > box.ra_min) & (cols["ra1"] < box.ra_max)
    return {n.decode() for n in cols["brickname"][dec_ok & ra_ok]}


@pytest.mark.parametrize(
    "box",
    [
        grid.RaDecBox(180.0, 181.0, 32.0, 33.0),
        grid.RaDecBox(359.0, 1.5, -2.0, 2.0),
        grid.RaDecBox(0.0, 360.0, 89.5, 90.0),
        grid.RaDecBox(100.0, 140.0, -90.0, -88.9),
        grid.RaDecBox(350.0, 10.0, 60.0, 61.0),
    ],
    ids=["example", "wrap", "north-pole", "south-pole", "wrap-high-dec"],
)
def test_bricks_overlapping_box(box: grid.RaDecBox):
    """Bricks overlapping a box equal a brute-force cut of the whole grid (wrap, poles)."""
    assert {b.brickname for b in grid.bricks_overlapping_box(box)} == _brute_overlap(box)


def test_worked_example_region():
    """The cookbook's region RA 180-181, Dec 32-33 has the 15 bricks centred in it."""
    found = grid.bricks_in_region(grid.RaDecBox(180.0, 181.0, 32.0, 33.0))
    assert [b.brickname for b in found] == WORKED_EXAMPLE


def test_region_wrapping_zero():
    """A region crossing RA 0 keeps bricks centred on both sides of it."""
    found = grid.bricks_in_region(grid.RaDecBox(359.5, 0.5, -0.25, 0.25))
    ras = sorted(b.ra for b in found)
    assert ras[0] < 0.5 and ras[-1] > 359.5
    assert all(b.ra <= 0.5 or b.ra >= 359.5 for b in found)


@pytest.mark.parametrize(
    "args",
    [(10.0, 20.0, 5.0, 5.0), (10.0, 10.0, 0.0, 1.0), (-5.0, 10.0, 0.0, 1.0), (0, 10, -91, 0)],
)
def test_invalid_regions(args: tuple[float, float, float, float]):
    """Empty regions and regions off the sky raise RegionError."""
    with pytest.raises(RegionError):
        grid.RaDecBox(*args)


def test_survey_bricks_table(tmp_path: Path):
    """write_survey_bricks writes legacypipe's columns for all bricks, matching real rows."""
    path = grid.write_survey_bricks(tmp_path / "survey-bricks.fits.gz")
    table = fitsio.read(str(path), ext=1)
    assert list(table.dtype.names) == [
        "brickname", "brickid", "brickq", "brickrow", "brickcol",
        "ra", "dec", "ra1", "ra2", "dec1", "dec2",
    ]  # fmt: skip
    assert len(table) == grid.NBRICKS
    header = fitsio.read_header(str(path), ext=1)
    assert (header["TFORM1"], header["TFORM2"], header["TFORM3"]) == ("8A", "J", "I")
    assert [p.name for p in tmp_path.iterdir()] == ["survey-bricks.fits.gz"]
    for real_path in REAL_TABLES:
        real = fitsio.read(str(real_path), ext=1)[0]
        mine = table[int(real["brickid"]) - 1]
        assert mine["brickname"].strip() == real["brickname"].strip()
        for key in ("brickid", "brickq", "brickrow", "brickcol", "ra", "dec", "dec1", "dec2"):
            assert mine[key] == real[key]
