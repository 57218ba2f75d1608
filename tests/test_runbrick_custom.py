"""The lite runbrick on a custom target (``--radec RA DEC -W W -H H``), as legacypipe's runbrick.

legacypipe names the brick ``custom-%06i%s%05i`` of (1000·RA, m/p, 1000·|Dec|), gives it
brickid −1 (``BrickDuck``), centres a brick's TAN grid on the target (``wcs_for_brick``) and
bounds BRICK_PRIMARY by the RA of pixels (W, H/2) … (1, H/2) and the Dec of (W/2, 1) …
(W/2, H) (``get_brick``); its coadds have no NPRIMARY pixels.  Expected values here come
from astropy's TAN, not from lsdr's WCS.  The real run is legacypipe's testcase4 target
(upstream ``test_4``) with the sky lsdr's zeropoints phase makes, checked against Gaia.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import fitsio
import numpy as np
import pytest
from astropy.wcs import WCS
from required_in_ci import legacypipe_test_case

from lsdr.survey.core.bricks import custom_brickname
from lsdr.survey.core.errors import UsageError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.refcat import read_gaia
from lsdr.survey.pretractor.zeropoints.image import measure_image
from lsdr.survey.runbrick.options import RunbrickOptions
from lsdr.survey.runbrick.primary import unique_pixels
from lsdr.survey.runbrick.stages import brick_geometry, run_brick
from lsdr.survey.runbrick.types import BrickGeometry

TARGET = (186.743965, 25.461788)
"""legacypipe's runbrick_test.py test_4 target in testcase4."""
NAME = "custom-186743p25461"


def _astropy_tan(ra: float, dec: float, w: int, h: int, pixscale: float) -> WCS:
    """wcs_for_brick's grid written out as FITS cards, for astropy."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [w / 2 + 0.5, h / 2 + 0.5]
    wcs.wcs.cd = [[-pixscale / 3600, 0.0], [0.0, pixscale / 3600]]
    return wcs


def _nearest_arcsec(cat: np.ndarray, ra: float, dec: float) -> float:
    """Distance (arcsec) from (ra, dec) to the nearest catalogue source."""
    d = np.hypot((cat["ra"] - ra) * np.cos(np.radians(dec)), cat["dec"] - dec)
    return float(3600.0 * d.min())


@pytest.mark.parametrize(
    ("ra", "dec", "name"),
    [
        (186.743965, 25.461788, "custom-186743p25461"),
        (0.0, 0.0, "custom-000000p00000"),
        (359.9999, -89.99999, "custom-359999m89999"),
        (10.5, -0.25, "custom-010500m00250"),
        (210.0, 90.0, "custom-210000p90000"),
    ],
)
def test_custom_brickname_is_legacypipes(ra: float, dec: float, name: str) -> None:
    """custom-%06i%s%05i of int(1000 RA), m for Dec < 0, int(1000 |Dec|)."""
    assert custom_brickname(ra, dec) == name
    assert RunbrickOptions(radec=(ra, dec)).brickname == name
    assert BrickGeometry.for_target(ra, dec, width=10, height=10).brickname == name


@pytest.mark.parametrize(
    ("radec", "shown"),
    [
        ((360.0, 10.0), "360.0"),
        ((-0.5, 10.0), "-0.5"),
        ((400.0, 10.0), "400.0"),
        ((10.0, 90.5), "90.5"),
        ((10.0, -91.0), "-91.0"),
        ((float("nan"), 0.0), "nan"),
    ],
)
def test_invalid_targets_are_usage_errors_naming_the_value(
    radec: tuple[float, float], shown: str
) -> None:
    """RA outside [0, 360) or |Dec| > 90: UsageError naming the value, wherever it is given."""
    with pytest.raises(UsageError, match=shown):
        RunbrickOptions(radec=radec)
    with pytest.raises(UsageError, match=shown):
        BrickGeometry.for_target(*radec)
    with pytest.raises(UsageError, match=shown):
        custom_brickname(*radec)


def test_target_grid_is_wcs_for_brick_at_the_target() -> None:
    """Centre, CRPIX, CD and BRICK_PRIMARY bounds as legacypipe; brickid −1; all pixels unique."""
    w, h, p = 250, 200, 0.262
    geom = BrickGeometry.for_target(*TARGET, width=w, height=h, pixscale=p)
    assert (geom.brickname, geom.brickid, geom.bri, geom.custom) == (NAME, -1, "cus", True)
    assert (geom.width, geom.height) == (w, h)
    ours = geom.wcs()
    assert (ours.crval1, ours.crval2) == TARGET
    assert (ours.crpix1, ours.crpix2) == (w / 2 + 0.5, h / 2 + 0.5)
    assert (ours.cd1_1, ours.cd1_2, ours.cd2_1, ours.cd2_2) == (-p / 3600, 0.0, 0.0, p / 3600)
    ra_c, dec_c = ours.pixel_to_radec(w / 2 + 0.5, h / 2 + 0.5)
    assert float(ra_c) == pytest.approx(TARGET[0], abs=1e-12)
    assert float(dec_c) == pytest.approx(TARGET[1], abs=1e-12)
    ref = _astropy_tan(*TARGET, w, h, p)
    (ra1, _), (ra2, _), (_, dec1), (_, dec2) = ref.all_pix2world(
        [[w, h / 2], [1, h / 2], [w / 2, 1], [w / 2, h]], 1
    )
    assert geom.ra1 == pytest.approx(ra1, abs=1e-9) and geom.ra2 == pytest.approx(ra2, abs=1e-9)
    assert geom.dec1 == pytest.approx(dec1, abs=1e-9)
    assert geom.dec2 == pytest.approx(dec2, abs=1e-9)
    assert geom.ra1 < TARGET[0] < geom.ra2 and geom.dec1 < TARGET[1] < geom.dec2
    assert unique_pixels(geom).shape == (h, w) and unique_pixels(geom).all()


def test_target_at_ra_zero_wraps_its_unique_area() -> None:
    """A target at RA 0.001: ra1 is just below 360, ra2 just above 0 (the wrapped test)."""
    geom = BrickGeometry.for_target(0.001, 1.0, width=250, height=250)
    assert geom.ra1 > 359.9 and 0.0 < geom.ra2 < 0.1


def test_zoom_cuts_a_target_grid_as_a_brick_grid() -> None:
    """--zoom on a target keeps the full grid's CRPIX shifted, as on a grid brick."""
    zoom = (100, 150, 20, 80)
    full = BrickGeometry.for_target(*TARGET, width=250, height=250)
    cut = BrickGeometry.for_target(*TARGET, width=250, height=250, zoom=zoom)
    assert (cut.width, cut.height) == (50, 60)
    ra, dec = cut.wcs().pixel_to_radec(1.0, 1.0)
    ra_full, dec_full = full.wcs().pixel_to_radec(101.0, 21.0)
    assert (float(ra), float(dec)) == pytest.approx((float(ra_full), float(dec_full)), abs=1e-12)
    grid = BrickGeometry.for_brick("1867p255", zoom=(2050, 2300, 1150, 1400))
    assert (grid.width, grid.height, grid.crpix) == (250, 250, (-249.5, 650.5))


def test_brick_geometry_needs_the_matching_target() -> None:
    """A custom name needs its radec; a grid brick refuses one; another target's name is refused."""
    with_target = RunbrickOptions(radec=TARGET, width=250, height=250)
    assert brick_geometry(NAME, with_target) == BrickGeometry.for_target(
        *TARGET, width=250, height=250
    )
    with pytest.raises(UsageError, match="needs its target"):
        brick_geometry(NAME, RunbrickOptions())
    with pytest.raises(UsageError, match="only one of --brick and --radec"):
        brick_geometry("1867p255", with_target)
    with pytest.raises(UsageError, match="custom-186744p25461"):
        brick_geometry("custom-186744p25461", with_target)
    assert not brick_geometry("1867p255", RunbrickOptions(width=100, height=100)).custom


def test_testcase4_custom_target_finds_the_gaia_stars(tmp_path: Path) -> None:
    """testcase4 at upstream test_4's --radec, 250 × 250: tractor/cus/…, its Gaia stars found."""
    root = tmp_path / "testcase4"
    shutil.copytree(legacypipe_test_case("testcase4"), root)
    layout = ReleaseLayout(root)
    image = str(fitsio.read(str(root / "survey-ccds-1.fits.gz"))["image_filename"][0])
    assert measure_image(layout, image.strip()).made_calibs  # testcase4 ships no sky
    options = RunbrickOptions(bands=("z",), radec=TARGET, width=250, height=250, force_all=True)
    assert options.brickname == NAME
    result = run_brick(layout, NAME, options)
    assert result.status == "done" and result.n_ccds >= 1
    path = root / "tractor" / "cus" / f"tractor-{NAME}.fits"
    assert path.is_file() and layout.tractor(NAME) == path
    assert path in result.products
    cat = fitsio.read(str(path))
    hdr = fitsio.read_header(str(path), 0)
    assert (hdr["BRICKNAM"], hdr["BRICKID"]) == (NAME, -1)
    assert set(cat["brickname"].astype(str)) == {NAME}
    assert set(cat["brickid"].tolist()) == {-1}
    # The coadds' WCS is centred on the target.
    pixels, image_hdr = fitsio.read(str(layout.coadd(NAME, "image", "z")), ext=1, header=True)
    assert pixels.shape == (250, 250)
    cards = {k: image_hdr[k] for k in ("CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CRPIX1")}
    cards.update({k: image_hdr[k] for k in ("CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2")})
    assert (cards["CRVAL1"], cards["CRVAL2"]) == TARGET
    assert (cards["CRPIX1"], cards["CRPIX2"]) == (125.5, 125.5)
    centre = WCS(cards).all_pix2world([[125.5, 125.5]], 1)[0]
    assert centre == pytest.approx(TARGET, abs=1e-9)
    # No NPRIMARY pixel; every source on the grid is primary.
    maskbits = fitsio.read(str(layout.coadd_maskbits(NAME)), ext=1)
    mb_hdr = fitsio.read_header(str(layout.coadd_maskbits(NAME)), 1)
    assert maskbits.shape == (250, 250) and not (maskbits & mb_hdr["MB_NPRIMARY"]).any()
    on_grid = (cat["bx"] > -0.5) & (cat["bx"] < 249.5) & (cat["by"] > -0.5) & (cat["by"] < 249.5)
    assert on_grid.all() and cat["brick_primary"].all()
    # The Gaia stars of the footprint (as test_runbrick_real counts them), found within 1″.
    ref = _astropy_tan(*TARGET, 250, 250, 0.262)
    corners = ref.all_pix2world([[0.5, 0.5], [250.5, 0.5], [250.5, 250.5], [0.5, 250.5]], 1)
    gaia = read_gaia(layout, corners[:, 0], corners[:, 1])
    x, y = ref.all_world2pix(gaia["ra"], gaia["dec"], 1)
    gaia = gaia[(x > 0.5) & (x < 250.5) & (y > 0.5) & (y < 250.5)]
    assert len(gaia) == 3
    assert int(np.sum(np.char.strip(cat["ref_cat"].astype(str)) == "G2")) == len(gaia)
    for star in gaia:
        assert _nearest_arcsec(cat, float(star["ra"]), float(star["dec"])) < 1.0
    # upstream test_4b's blob source is in the footprint too.
    assert _nearest_arcsec(cat, 186.740369, 25.453855) < 1.0
