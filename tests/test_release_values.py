"""release_values: two tiny fake releases compare equal, and each kind of change is reported."""

from __future__ import annotations

import shutil
from pathlib import Path

import fitsio
import numpy as np
import pytest
from PIL import Image
from release_values import FILES, PICTURES, VALUES, Comparison, compare_releases, main

CATALOGUE = "tractor/180/tractor-1801p320.fits"
COADD = "coadd/180/1801p320/legacysurvey-1801p320-image-g.fits.fz"
PLOT = "plots/depth-histogram.png"


def make_release(root: Path) -> Path:
    """A release with a catalogue, a tile-compressed image, text, a checksum listing, a plot."""
    (root / "tractor/180").mkdir(parents=True)
    (root / "coadd/180/1801p320").mkdir(parents=True)
    (root / "plots").mkdir()
    (root / "state").mkdir()
    rows = np.zeros(4, dtype=[("brickname", "U8"), ("flux_g", "f4"), ("shape", "f4", (2,))])
    rows["brickname"] = "1801p320"
    rows["flux_g"] = [1.0, np.nan, 3.0, 4.0]  # NaN == NaN when compared
    with fitsio.FITS(str(root / CATALOGUE), "rw", clobber=True) as out:
        out.write(rows, extname="CATALOG", header={"BRICKNAM": "1801p320"})
    pixels = np.arange(8 * 10, dtype=np.float32).reshape(8, 10)
    with fitsio.FITS(str(root / COADD), "rw", clobber=True) as out:
        out.write(pixels, extname="IMAGE_G", compress="GZIP", qlevel=0.0, qmethod="NO_DITHER")
    (root / "bricks.txt").write_text("1801p320\n1801p322\n")
    (root / "notes.md").write_text(f"made in {root.absolute()}\n")  # the root is replaced
    digest = "0" * 64
    (root / "tractor/180/brick-1801p320.sha256sum").write_text(
        f"{digest} *{CATALOGUE}\n{digest} *{PLOT}\n"
    )
    Image.fromarray(np.full((5, 6, 3), 200, dtype=np.uint8)).save(root / PLOT)
    (root / "state/ledger.txt").write_text(f"{root}\n")
    return root


@pytest.fixture
def releases(tmp_path: Path) -> tuple[Path, Path]:
    """Release A and its copy B."""
    a = make_release(tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    (b / "notes.md").write_text(f"made in {b.absolute()}\n")
    return a, b


def whats(result: Comparison, path: str) -> list[str]:
    """The differences reported for one file."""
    return [d.what for d in result.differences if d.path == path]


def test_equal_releases_compare_equal(releases: tuple[Path, Path]) -> None:
    """A copy (its state/ differing and its text naming its own root) is equal; exit 0."""
    a, b = releases
    (b / "state/ledger.txt").write_text("another run\n")
    result = compare_releases(a, b)
    assert result.equal, result.differences
    assert {CATALOGUE, COADD, "bricks.txt", "notes.md", PLOT} <= set(result.compared)
    assert not any(p.startswith("state/") for p in result.compared)
    assert main([str(a), str(b)]) == 0


def test_a_table_value_is_reported_with_hdu_column_and_row(releases: tuple[Path, Path]) -> None:
    """One flux changed in place: the file, HDU, column and row are named."""
    a, b = releases
    with fitsio.FITS(str(b / CATALOGUE), "rw") as f:
        f[1].write_column("flux_g", np.array([3.5], dtype="f4"), firstrow=2)
    result = compare_releases(a, b)
    [what] = whats(result, CATALOGUE)
    assert "HDU 1 (CATALOG) column flux_g: 1 of 4 rows differ; first at row 2" in what
    assert result.differences[0].category == VALUES
    assert main([str(a), str(b)]) == 1


def test_a_pixel_of_a_compressed_image_is_reported(releases: tuple[Path, Path]) -> None:
    """One pixel changed and the image rewritten with the same compression: pixel named."""
    a, b = releases
    pixels = fitsio.read(str(b / COADD), ext=1)
    pixels[3, 4] = -1.0
    with fitsio.FITS(str(b / COADD), "rw", clobber=True) as out:
        out.write(pixels, extname="IMAGE_G", compress="GZIP", qlevel=0.0, qmethod="NO_DITHER")
    [what] = whats(compare_releases(a, b), COADD)
    assert what.startswith("HDU 1 (IMAGE_G) pixels: 1 of 80 pixels differ; first at [3, 4]")


def test_header_cards_dtypes_and_columns_are_reported(releases: tuple[Path, Path]) -> None:
    """A card's value, a column's dtype and a missing column are differences."""
    a, b = releases
    rows = fitsio.read(str(a / CATALOGUE), ext=1)
    changed = np.zeros(len(rows), dtype=[("brickname", "U8"), ("flux_g", "f8")])
    changed["brickname"], changed["flux_g"] = rows["brickname"], rows["flux_g"]
    with fitsio.FITS(str(b / CATALOGUE), "rw", clobber=True) as out:
        out.write(changed, extname="CATALOG", header={"BRICKNAM": "1801p322"})
    found = whats(compare_releases(a, b), CATALOGUE)
    assert "HDU 1 (CATALOG) card BRICKNAM: A '1801p320', B '1801p322'" in found
    assert "HDU 1 (CATALOG) column flux_g: dtype A >f4, B >f8" in found
    assert "HDU 1 (CATALOG) columns only in A ['shape'], only in B []" in found


def test_a_text_line_and_a_checksum_entry_are_reported(releases: tuple[Path, Path]) -> None:
    """One line of bricks.txt, one digest of a listing (a picture's is filed with pictures)."""
    a, b = releases
    (b / "bricks.txt").write_text("1801p320\n1801p325\n")
    listing = b / "tractor/180/brick-1801p320.sha256sum"
    listing.write_text(listing.read_text().replace("0" * 64, "1" * 64))
    result = compare_releases(a, b)
    [what] = whats(result, "bricks.txt")
    assert "line 2: A ['1801p322'], B ['1801p325']" in what
    by_what = {d.what.split(":")[0]: d.category for d in result.differences}
    assert by_what[f"entry {CATALOGUE}"] == VALUES
    assert by_what[f"entry {PLOT}"] == PICTURES


def test_pictures_and_files_are_their_own_categories(releases: tuple[Path, Path]) -> None:
    """A changed plot pixel is an 'images for people' difference; extra files are 'files'."""
    a, b = releases
    image = np.array(Image.open(b / PLOT))
    image[1, 2] = 0
    Image.fromarray(image).save(b / PLOT)
    (b / "bricks.txt").rename(b / "bricks-renamed.txt")
    result = compare_releases(a, b)
    [picture] = result.in_category(PICTURES)
    assert picture.path == PLOT
    assert "first at [1, 2, 0]" in picture.what
    assert {(d.path, d.what) for d in result.in_category(FILES)} == {
        ("bricks.txt", "only in A"),
        ("bricks-renamed.txt", "only in B"),
    }
    assert not result.values_equal


def test_binary_string_columns_are_compared_as_bytes(releases: tuple[Path, Path]) -> None:
    """A kd-tree's blob column (not ASCII, which fitsio cannot decode) is compared raw."""
    a, b = releases
    for root, last in ((a, 0x84), (b, 0x85)):
        blob = np.zeros(2, dtype=[("kdtree_data_ccds", "S4")])
        blob["kdtree_data_ccds"] = [b"\x01\x02\x03\x84", bytes([1, 2, 3, last])]
        with fitsio.FITS(str(root / "survey-ccds-dr10.kd.fits"), "rw", clobber=True) as out:
            out.write(blob)
    [what] = whats(compare_releases(a, b), "survey-ccds-dr10.kd.fits")
    assert what.startswith("HDU 1 column kdtree_data_ccds: 1 of 2 rows differ; first at row 1")
