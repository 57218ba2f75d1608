"""The bright-neighbour step on real lite-runbrick products of the simulator's border star."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import fitsio
import numpy as np
import pytest
from border_release import EAST, WEST

from lsdr.survey.core import bricks as grid
from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.tan import TanWcs
from lsdr.survey.posttractor.brightneighbors import (
    grid_neighbours,
    neighbour_bricks,
    update_bright_neighbours,
)

BRIGHT, MEDIUM, NPRIMARY = 2, 2048, 1
PRODUCTS = ("coadd", "tractor", "tractor-i", "metrics", "truth")


@pytest.fixture
def products(border_release: ReleaseLayout) -> ReleaseLayout:
    """Both bricks run by the lite runbrick over the simulated border star (built once)."""
    return border_release


def _copy(layout: ReleaseLayout, dest: Path) -> ReleaseLayout:
    for name in PRODUCTS:
        shutil.copytree(layout.root / name, dest / name)
    return ReleaseLayout(dest)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(layout: ReleaseLayout) -> dict[str, str]:
    return {
        p.relative_to(layout.root).as_posix(): _sha(p)
        for name in ("coadd", "tractor", "tractor-i", "metrics")
        for p in sorted((layout.root / name).rglob("*"))
        if p.is_file()
    }


def _maskbits(path: Path) -> tuple[np.ndarray, TanWcs]:
    data, hdr = fitsio.read(str(path), ext=1, header=True)
    keys = ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2")
    return data.astype(np.int64), TanWcs(*(float(hdr[k]) for k in keys))


def _border_star() -> tuple[float, float]:
    b = grid.brick_by_name(EAST)
    return b.ra1, b.dec


def _star_radius_deg(layout: ReleaseLayout, brick: str) -> float:
    refs = fitsio.read(str(layout.metrics(brick, "reference")))
    ra, dec = _border_star()
    near = np.hypot((refs["ra"] - ra) * np.cos(np.radians(dec)), refs["dec"] - dec) < 1e-4
    assert near.sum() == 1, "the border star is a reference star of the brick"
    return float(refs["radius"][near][0])


def _checksums_pass(layout: ReleaseLayout, brick: str) -> bool:
    sums = layout.brick_checksums(brick)
    run = subprocess.run(
        ["sha256sum", "--check", "--quiet", str(sums.relative_to(layout.root))],
        cwd=layout.root,
        capture_output=True,
        text=True,
        check=False,
    )
    return run.returncode == 0


def test_grid_neighbours_share_an_edge_or_corner() -> None:
    """It finds the bricks around a brick, across rows with other RA splits and across RA 0."""
    around = grid_neighbours(EAST)
    assert WEST in around and "1807p325" in around and EAST not in around
    assert 6 <= len(around) <= 8
    for name in around:
        assert EAST in grid_neighbours(name)
    wrap = grid_neighbours("0001p000")
    assert any(name.startswith("359") for name in wrap)
    assert grid_neighbours("custom-180000p32500") == []


@pytest.mark.slow
def test_border_star_extends_bright_to_the_neighbours_blobs(
    products: ReleaseLayout, tmp_path: Path
) -> None:
    """The border star's BRIGHT mask marks the blobs it cuts at the border; a rerun is a no-op."""
    layout = _copy(products, tmp_path / "rel")
    star_ra, star_dec = _border_star()
    originals = {}
    for brick in (WEST, EAST):
        # Measured behaviour of the lite runbrick: the star's circles are already on both sides.
        mask, wcs = _maskbits(layout.coadd_maskbits(brick))
        x, y = wcs.radec_to_pixel(star_ra, star_dec)
        assert mask[round(float(y) - 1), round(float(x) - 1)] & BRIGHT
        originals[brick] = mask
        assert _checksums_pass(layout, brick)
    cat_before = {b: fitsio.read(str(layout.tractor(b))) for b in (WEST, EAST)}

    results = {b: update_bright_neighbours(layout, b) for b in (WEST, EAST)}
    first = _files(layout)
    for brick, other in ((WEST, EAST), (EAST, WEST)):
        result = results[brick]
        assert other in result.neighbours
        assert result.pixels_changed > 0 and result.sources_changed > 0
        mask_backup = layout.root / "coadd" / brick[:3] / brick
        mask_backup /= f"legacysurvey-{brick}-maskbits-orig.fits.fz"
        assert Path(result.backup) == mask_backup
        assert _sha(mask_backup) != _sha(layout.coadd_maskbits(brick))
        assert (layout.root / "tractor" / brick[:3] / f"tractor-{brick}-orig.fits").is_file()
        mask, wcs = _maskbits(layout.coadd_maskbits(brick))
        before = originals[brick]
        changed = mask != before
        assert int(changed.sum()) == result.pixels_changed
        assert np.all((mask | before) == mask), "bits are only added"
        assert set(np.unique(mask[changed] ^ before[changed])) <= {BRIGHT, MEDIUM, BRIGHT | MEDIUM}
        # Where: beside the shared border, near the star (the blobs its BRIGHT circle cuts).
        ys, xs = np.nonzero(changed)
        ra, dec = wcs.pixel_to_radec(xs + 1.0, ys + 1.0)
        cosd = np.cos(np.radians(star_dec))
        radius = _star_radius_deg(layout, brick)  # the MEDIUM (full) radius; BRIGHT is half
        # Within the BRIGHT radius (half the MEDIUM one) of the border in RA: the blobs the
        # circle cuts, grown 8 pixels as legacypipe grows them, reach 0.40 of the radius here.
        assert np.all(np.abs(ra - star_ra) * cosd < 0.5 * radius)
        assert np.all(np.hypot((ra - star_ra) * cosd, dec - star_dec) < radius)
        blobs = fitsio.read(str(layout.metrics(brick, "blobs")))
        assert np.all(blobs[changed] >= 0), "only blob pixels change"
        # Every changed blob reaches into the star's BRIGHT circle, which did not cover it all.
        for blob in np.unique(blobs[changed]):
            members = blobs == blob
            assert np.any(members & ((before & BRIGHT) != 0))
        # The catalogue follows the map at the sources' pixels.
        cat = fitsio.read(str(layout.tractor(brick)))
        old = cat_before[brick]
        rows = np.nonzero(cat["maskbits"] != old["maskbits"])[0]
        assert len(rows) == result.sources_changed
        iy = np.clip(np.rint(cat["by"]), 0, mask.shape[0] - 1).astype(int)
        ix = np.clip(np.rint(cat["bx"]), 0, mask.shape[1] - 1).astype(int)
        assert np.array_equal(cat["maskbits"][rows], old["maskbits"][rows] | mask[iy, ix][rows])
        assert np.all(cat["maskbits"][rows] & BRIGHT)
        assert np.array_equal(cat["ra"], old["ra"]) and np.array_equal(cat["flux_r"], old["flux_r"])
        assert _checksums_pass(layout, brick)

    again = {b: update_bright_neighbours(layout, b) for b in (EAST, WEST)}
    assert again == results
    assert _files(layout) == first, "a second run changes no file"


@pytest.mark.slow
def test_order_missing_neighbour_and_restore(products: ReleaseLayout, tmp_path: Path) -> None:
    """The order of bricks does not matter; a lone brick is left as is; originals come back."""
    forward = _copy(products, tmp_path / "forward")
    backward = _copy(products, tmp_path / "backward")
    for brick in (WEST, EAST):
        update_bright_neighbours(forward, brick)
    for brick in (EAST, WEST):
        update_bright_neighbours(backward, brick)
    assert _files(forward) == _files(backward)

    # The neighbour's products disappear: the brick needs nothing more and is restored.
    east_mask = forward.coadd_maskbits(EAST)
    shutil.rmtree(forward.coadd_dir(WEST))
    assert neighbour_bricks(forward, EAST) == []
    result = update_bright_neighbours(forward, EAST)
    assert (result.pixels_changed, result.sources_changed, result.neighbours) == (0, 0, ())
    assert result.backup == ""
    assert _sha(east_mask) == _sha(forward.coadd_maskbits_orig(EAST))
    assert _sha(forward.tractor(EAST)) == _sha(forward.tractor_orig(EAST))
    assert _checksums_pass(forward, EAST)

    # A lone brick that was never changed: nothing is written at all.
    lone = _copy(products, tmp_path / "lone")
    shutil.rmtree(lone.coadd_dir(WEST))
    before = _files(lone)
    assert update_bright_neighbours(lone, EAST).pixels_changed == 0
    assert _files(lone) == before


@pytest.mark.slow
def test_bad_products_name_the_file(products: ReleaseLayout, tmp_path: Path) -> None:
    """A truncated neighbour maskbits image or a missing blob map is an error naming the file."""
    layout = _copy(products, tmp_path / "rel")
    blobs = layout.metrics(EAST, "blobs")
    blobs.unlink()
    with pytest.raises(InputFileError, match=blobs.name):
        update_bright_neighbours(layout, EAST)
    east_mask = layout.coadd_maskbits(EAST)
    east_mask.write_bytes(east_mask.read_bytes()[:5000])
    with pytest.raises(InputFileError, match=east_mask.name):
        update_bright_neighbours(layout, WEST)
