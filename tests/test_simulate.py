"""The synthetic survey: files a CP user would recognise, with sources where the truth says."""

from __future__ import annotations

import hashlib
from pathlib import Path

import fitsio
import numpy as np
import pytest
import sep
from astropy.io import fits
from astropy.wcs import WCS
from geometry import independent_touching
from scipy.spatial import cKDTree

from lsdr.survey.core import bricks as grid
from lsdr.survey.core.cameras import get_camera
from lsdr.survey.core.errors import CameraError, RegionError, UsageError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.legacypipe_data import legacypipe_data_file
from lsdr.survey.core.refcat import GAIA_DTYPE, healpix_ring
from lsdr.survey.core.tan import TanWcs
from lsdr.survey.pretractor.footprints import survey_footprints
from lsdr.survey.simulate.config import PassSpec, SimulationConfig
from lsdr.survey.simulate.gaia import grz_from_gaia
from lsdr.survey.simulate.simulator import simulate_survey

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "legacypipe-test"

ONE_BRICK = grid.RaDecBox(180.40, 180.50, 32.45, 32.55)  # holds 1804p325's centre only


def small_config(**changes: object) -> SimulationConfig:
    """One Mosaic z pointing and one 90Prime r pointing over one brick, demo binning."""
    base: dict[str, object] = {
        "region": ONE_BRICK,
        "passes": (PassSpec("mosaic", "z", 1), PassSpec("90prime", "r", 1)),
        "workers": 1,
    }
    base.update(changes)
    return SimulationConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory) -> ReleaseLayout:
    """A small synthetic survey shared by the tests of this module."""
    root = tmp_path_factory.mktemp("sim")
    simulate_survey(root, small_config())
    return ReleaseLayout(root)


def truth_ccds(layout: ReleaseLayout) -> np.ndarray:
    """The per-CCD truth table."""
    return fitsio.read(str(layout.truth_ccds))


def test_images_and_companions_open_with_fitsio_and_astropy(survey: ReleaseLayout):
    """Every ooi has ood and oow companions; all open with fitsio and astropy, CCD by CCD."""
    images = sorted(survey.images_dir.rglob("*_ooi_*.fits.fz"))
    assert len(images) == 3  # Mosaic z, 90Prime r, and Mosaic z's older processing
    for ooi in images:
        for kind in ("ooi", "ood", "oow"):
            path = Path(str(ooi).replace("_ooi_", f"_{kind}_"))
            with fitsio.FITS(str(path)) as f, fits.open(path) as h:
                assert len(f) == len(h) >= 2
                for ext in range(1, len(h)):
                    data = h[ext].data
                    assert data.shape == tuple(f[ext].get_info()["dims"])
                    assert np.all(np.isfinite(data))
                    assert h[ext].header["EXTNAME"] == f[ext].read_header()["EXTNAME"]


def test_headers_have_what_legacypipe_reads(survey: ReleaseLayout):
    """Band, exposure number, CCD name, WCS and conditions follow each camera's convention."""
    rows = truth_ccds(survey)
    for row in rows:
        path = survey.images_dir / row["image_filename"].strip()
        primary = fitsio.read_header(str(path), ext=0)
        ccd = fitsio.read_header(str(path), ext=row["ccdname"].strip())
        camera = get_camera(row["camera"].strip())
        assert path.name.startswith(camera.prefix + "_")
        keys = ("EXPTIME", "MJD-OBS", "AIRMASS", "FILTER", "PLVER", "PLPROCID", "DATE", "RA")
        for key in (*keys, *(("SKYADU",) if camera.name != "decam" else ())):
            assert key in primary, key
        for key in ("CRVAL1", "CD1_1", "CCDNAME", "GAIN", "FWHM"):
            assert key in ccd, key
        band = primary["FILTER"].split()[0]
        assert {"zd": "z", "bokr": "r"}.get(band, band) == row["filter"].strip()
        if camera.name == "90prime":
            # legacypipe's BokImage: digits of DTACQNAM's basename.
            base = Path(primary["DTACQNAM"]).name.replace(".fits", "")
            assert int("".join(c for c in base if c.isdigit())) == row["expnum"]
        else:
            assert primary["EXPNUM"] == row["expnum"]
        assert ccd["EXTNAME"].strip().upper() == row["ccdname"].strip()
        assert primary["INSTRUME"].lower().replace("mosaic3", "mosaic") == camera.name


def test_wcs_round_trips_and_equals_astropy(survey: ReleaseLayout):
    """pixel -> sky -> pixel returns the pixel, and lsdr's TAN equals astropy's to 1e-6 px."""
    row = truth_ccds(survey)[0]
    path = survey.images_dir / row["image_filename"].strip()
    header = fits.getheader(path, extname=row["ccdname"].strip())
    aw = WCS(header)
    tan = TanWcs(*(float(header[k]) for k in ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2",
                                               "CD1_1", "CD1_2", "CD2_1", "CD2_2")))  # fmt: skip
    rng = np.random.default_rng(3)
    x = rng.uniform(1, row["width"], 500)
    y = rng.uniform(1, row["height"], 500)
    ra, dec = aw.all_pix2world(x, y, 1)
    x2, y2 = aw.all_world2pix(ra, dec, 1)
    assert np.max(np.hypot(x2 - x, y2 - y)) < 1e-6
    ra3, dec3 = tan.pixel_to_radec(x, y)
    assert np.max(np.abs(((ra3 - ra + 180) % 360 - 180) * np.cos(np.radians(dec)))) * 3600 < 1e-6
    assert np.max(np.abs(dec3 - dec)) * 3600 < 1e-6
    x4, y4 = tan.radec_to_pixel(ra, dec)
    assert np.max(np.hypot(x4 - x, y4 - y)) < 1e-6


def _star_offsets(layout: ReleaseLayout, row: np.void, truth: np.ndarray) -> tuple[int, np.ndarray]:
    """sep windowed centroids of a CCD's bright isolated stars minus their truth positions."""
    kind = np.char.strip(truth["type"].astype(str))
    path = layout.images_dir / row["image_filename"].strip()
    ext = row["ccdname"].strip()
    img = fitsio.read(str(path), ext=ext).astype(np.float64)
    dq = fitsio.read(str(path).replace("_ooi_", "_ood_"), ext=ext)
    wcs = WCS(fits.getheader(path, extname=ext))
    bkg = sep.Background(img, mask=dq > 0)
    sub = img - bkg
    objects = sep.extract(sub, 3.0, err=bkg.globalrms, mask=dq > 0, minarea=5)

    years = (row["mjd_obs"] - 51544.5) / 365.25 + 2000.0 - truth["ref_epoch"]
    dec = truth["dec"] + truth["pmdec"] * years / 3.6e6
    ra = truth["ra"] + truth["pmra"] * years / 3.6e6 / np.cos(np.radians(truth["dec"]))
    x, y = wcs.all_world2pix(ra, dec, 0)
    tree = cKDTree(np.c_[x, y])
    isolated = np.array([len(n) == 1 for n in tree.query_ball_point(np.c_[x, y], 8 * row["fwhm"])])
    mag = truth[f"mag_{row['filter'].strip()}"]
    margin = 10
    inside = (
        (x > margin) & (x < row["width"] - margin) & (y > margin) & (y < row["height"] - margin)
    )
    flux_e = 10 ** (-0.4 * (mag - row["ccdzpt"]))
    snr = flux_e / (row["sig1"] * 10 ** (0.4 * (row["ccdzpt"] - 22.5)) * 2.0 * row["fwhm"])
    chosen = (kind == "PSF") & inside & isolated & (mag > 17.0) & (snr > 100)
    # Leave out stars whose centroid window meets a flagged pixel (bleed trails, cosmic rays).
    half = int(np.ceil(3 * row["fwhm"]))
    for i in np.nonzero(chosen)[0]:
        cx, cy = round(x[i]), round(y[i])
        chosen[i] = not dq[
            max(cy - half, 0) : cy + half + 1, max(cx - half, 0) : cx + half + 1
        ].any()
    if not chosen.any():
        return 0, np.zeros((0, 2))
    found = cKDTree(np.c_[objects["x"], objects["y"]])
    dist, idx = found.query(np.c_[x[chosen], y[chosen]])
    ok = dist < 1.0
    # A window narrower than 1 pixel locks centroids to pixel centres when the PSF is
    # undersampled (90Prime at binning 2 can have FWHM < 1.5 px); 1 pixel is unbiased.
    window = max(row["fwhm"] / 2.355, 1.0)
    xw, yw, _ = sep.winpos(sub, objects["x"][idx[ok]], objects["y"][idx[ok]], window)
    return int(chosen.sum()), np.stack([xw - x[chosen][ok], yw - y[chosen][ok]], axis=1)


def test_sep_recovers_stars_at_truth_positions(survey: ReleaseLayout):
    """sep finds the bright isolated stars within 0.1 pixel of where the truth puts them."""
    truth = fitsio.read(str(survey.truth_catalog))
    rows = [r for r in truth_ccds(survey) if not r["superseded"]]
    results = [_star_offsets(survey, r, truth) for r in rows]
    wanted = sum(n for n, _ in results)
    offsets = np.concatenate([o for _, o in results if len(o)])
    distance = np.hypot(offsets[:, 0], offsets[:, 1])
    assert wanted >= 20, "too few test stars"
    assert len(offsets) >= 0.95 * wanted
    # Each star within 0.1 pixel (noise allows a few percent beyond); no systematic shift.
    assert np.mean(distance < 0.1) >= 0.95, np.sort(distance)[-5:]
    assert np.median(distance) < 0.03
    assert np.all(np.abs(offsets.mean(axis=0)) < 0.01)


def legacypipe_amp_factor(row: np.void, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """legacypipe's per-amplifier factor at pixels (x, y), from its ``ampcorrections.fits``.

    Read here from the table: rows of the camera, band and CCD whose MJD range holds the
    exposure (non-finite bounds open) and whose box [xlo, xhi) × [ylo, yhi) holds the pixel.
    """
    table = fitsio.read(str(legacypipe_data_file("ampcorrections.fits")))
    factor = np.ones(len(x))
    mjd = row["mjd_obs"]
    for amp in table:
        if (amp["camera"].strip(), amp["filter"].strip(), amp["ccdname"].strip()) != (
            row["camera"].strip(),
            row["filter"].strip(),
            row["ccdname"].strip(),
        ):
            continue
        if (np.isfinite(amp["mjd_start"]) and mjd < amp["mjd_start"]) or (
            np.isfinite(amp["mjd_end"]) and mjd > amp["mjd_end"]
        ):
            continue
        px, py = np.round(x), np.round(y)
        inside = (px >= amp["xlo"]) & (px < amp["xhi"]) & (py >= amp["ylo"]) & (py < amp["yhi"])
        factor[inside] = 10 ** (0.4 * amp["dzp"])
    return factor


def test_zeropoint_and_noise_in_truth_are_what_the_pixels_show(survey: ReleaseLayout):
    """Aperture photometry of bright stars gives the truth ccdzpt; sky noise equals sig1.

    The CP's amplifier offsets are in the pixels, so each star's flux is first corrected as
    legacypipe corrects it (its per-amp table), which is what the truth zeropoint describes.
    """
    truth = fitsio.read(str(survey.truth_catalog))
    kind = np.char.strip(truth["type"].astype(str))
    residuals = []
    for row in truth_ccds(survey):
        if row["superseded"]:
            continue
        path = survey.images_dir / row["image_filename"].strip()
        ext = row["ccdname"].strip()
        band = row["filter"].strip()
        img = fitsio.read(str(path), ext=ext).astype(np.float64)
        dq = fitsio.read(str(path).replace("_ooi_", "_ood_"), ext=ext)
        wcs = WCS(fits.getheader(path, extname=ext))
        bkg = sep.Background(img, mask=dq > 0)
        sky_sigma = row["sig1"] * 10 ** (0.4 * (row["ccdzpt"] - 22.5))
        assert bkg.globalrms == pytest.approx(sky_sigma, rel=0.05)
        x, y = wcs.all_world2pix(truth["ra"], truth["dec"], 0)
        mag = truth[f"mag_{band}"]
        stars = (kind == "PSF") & (mag > 17.5) & (mag < 20) & (x > 30) & (y > 30)
        stars &= (x < row["width"] - 30) & (y < row["height"] - 30)
        if not stars.any():
            continue
        flux, _, _ = sep.sum_circle(img - bkg, x[stars], y[stars], 6 * row["fwhm"])
        flux *= legacypipe_amp_factor(row, x[stars], y[stars])
        residuals.extend(2.5 * np.log10(flux) + mag[stars] - row["ccdzpt"])
    assert len(residuals) >= 10
    assert abs(np.median(residuals)) < 0.02


def test_detector_effects_are_flagged(survey: ReleaseLayout):
    """Saturated cores and bleeds, cosmic rays and bad columns carry CP DQ codes; weight 0 there."""
    rows = truth_ccds(survey)
    codes: set[int] = set()
    for row in rows:
        path = survey.images_dir / row["image_filename"].strip()
        ext = row["ccdname"].strip()
        dq = fitsio.read(str(path).replace("_ooi_", "_ood_"), ext=ext)
        weight = fitsio.read(str(path).replace("_ooi_", "_oow_"), ext=ext)
        codes.update(np.unique(dq).tolist())
        column = dq[:, row["bad_column"]]
        assert np.any(column == 1)
        assert np.all(weight[:, row["bad_column"]][column == 1] == 0)
        assert np.all(weight[dq == 0] > 0)
    assert {0, 1, 3, 4, 5} <= codes
    assert rows["n_saturated"].sum() > 0


def test_truth_and_reference_catalogue(survey: ReleaseLayout):
    """truth.fits has stars and both galaxy types; Gaia chunks have the real chunk columns."""
    truth = fitsio.read(str(survey.truth_catalog))
    kinds = set(np.char.strip(truth["type"].astype(str)).tolist())
    assert kinds == {"PSF", "EXP", "DEV"}
    assert truth["border_star"].sum() == 1
    chunks = sorted(survey.gaia_dir.glob("chunk-*.fits"))
    assert chunks
    rows = np.concatenate([fitsio.read(str(c), ext=1) for c in chunks])
    assert rows.dtype.names == GAIA_DTYPE.names
    for chunk in chunks:
        part = fitsio.read(str(chunk), ext=1)
        assert set(healpix_ring(part["ra"], part["dec"]).tolist()) == {int(chunk.stem[-5:])}
    real = SHARED / "mzlsbass2" / "gaia" / "chunk-00799.fits"
    if real.exists():
        real_dtype = fitsio.read(str(real), ext=1, rows=[0]).dtype
        assert [(n, real_dtype[n].kind, real_dtype[n].itemsize) for n in real_dtype.names] == [
            (n, rows.dtype[n].kind, rows.dtype[n].itemsize) for n in rows.dtype.names
        ]
    # Every reference star is a truth star, and its g, r, z follow from its Gaia magnitudes.
    byid = {int(s): i for i, s in enumerate(truth["gaia_source_id"]) if s > 0}
    assert set(rows["source_id"].tolist()) == set(byid)
    bright = rows[rows["phot_g_mean_mag"] < 17]
    predicted = grz_from_gaia(
        bright["phot_bp_mean_mag"], bright["phot_g_mean_mag"], bright["phot_rp_mean_mag"]
    )
    match = truth[[byid[int(s)] for s in bright["source_id"]]]
    for band, mag in zip("grz", predicted, strict=True):
        assert np.allclose(mag, match[f"mag_{band}"], atol=0.06), band  # Gaia-like noise


def test_older_processing_of_an_exposure_is_written_too(survey: ReleaseLayout):
    """One exposure exists in two CP versions, same EXPNUM (for discover's de-duplication)."""
    rows = truth_ccds(survey)
    old = rows[rows["superseded"]]
    assert len(old)
    new = rows[(~rows["superseded"]) & (rows["expnum"] == old["expnum"][0])]
    assert len(new) == len(old)
    assert old["plver"][0] != new["plver"][0]
    assert "_v1.fits.fz" in old["image_filename"][0]


def test_same_seed_gives_identical_files(tmp_path: Path):
    """Two runs with one seed (one and two worker processes) write byte-identical files."""
    config = small_config(binning=8, galaxy_density=500.0)
    a, b = tmp_path / "a", tmp_path / "b"
    simulate_survey(a, config)
    simulate_survey(b, small_config(binning=8, galaxy_density=500.0, workers=2))

    def digests(root: Path) -> dict[str, str]:
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "simulation.json"  # records paths and mtimes
        }

    da, db = digests(a), digests(b)
    assert len(da) > 8 and da == db
    c = tmp_path / "c"
    simulate_survey(c, small_config(binning=8, galaxy_density=500.0, seed=2))
    assert digests(c) != da


def test_bricks_touching_equals_independent_geometry(tmp_path: Path):
    """On a generated survey, `bricks touching` for the worked example = astropy clipping.

    One Mosaic pointing over 1804p325 touches some of the region's 15 bricks, not all.
    """
    layout = ReleaseLayout(tmp_path)
    simulate_survey(
        tmp_path,
        small_config(passes=(PassSpec("mosaic", "z", 1),), binning=8, galaxy_density=100.0),
    )
    region = grid.RaDecBox(180.0, 181.0, 32.0, 33.0)
    candidates = grid.bricks_in_region(region)
    fp = survey_footprints(layout)
    touched = grid.bricks_touching_ccds(candidates, fp.ra, fp.dec, fp.corner_ra, fp.corner_dec)
    expected_ids = {b for _, b in independent_touching(fp.corner_ra, fp.corner_dec)}
    near = {
        b.brickid
        for b in candidates
        if np.min(np.hypot((fp.ra - b.ra) * np.cos(np.radians(b.dec)), fp.dec - b.dec))
        < grid.QUEUE_CLOSEST_RADIUS
    }
    expected = sorted(b.brickname for b in candidates if b.brickid in expected_ids | near)
    assert sorted(b.brickname for b in touched) == expected
    assert "1804p325" in expected and 0 < len(expected) < len(candidates)


@pytest.mark.parametrize(
    ("changes", "error", "needle"),
    [
        ({"passes": (PassSpec("hsc2", "g", 1),)}, CameraError, "unknown camera"),
        ({"passes": (PassSpec("mosaic", "g", 1),)}, CameraError, "has no band"),
        ({"binning": 0}, UsageError, "binning"),
    ],
)
def test_bad_configuration_is_refused(changes: dict[str, object], error: type, needle: str):
    """Unknown cameras and bands and impossible binning fail before anything is written."""
    with pytest.raises(error, match=needle):
        small_config(**changes)


def test_region_without_bricks_is_refused(tmp_path: Path):
    """A region holding no brick centre is an empty region: nothing is written."""
    with pytest.raises(RegionError, match="empty region"):
        simulate_survey(
            tmp_path / "x", small_config(region=grid.RaDecBox(180.0, 180.01, 32.0, 32.01))
        )
    assert not (tmp_path / "x").exists()


def test_rerun_with_the_same_configuration_writes_nothing(tmp_path: Path):
    """The same survey again is reused untouched; a touched file or new seed rewrites it."""
    config = small_config(binning=8, galaxy_density=500.0)
    first = simulate_survey(tmp_path, config)
    assert not first.reused

    def mtimes() -> dict[str, int]:
        return {str(p): p.stat().st_mtime_ns for p in tmp_path.rglob("*.fits*")}

    before = mtimes()
    again = simulate_survey(tmp_path, small_config(binning=8, galaxy_density=500.0, workers=2))
    assert again.reused and again.images == first.images and mtimes() == before
    first.images[0].write_bytes(first.images[0].read_bytes())  # same bytes, new mtime
    assert not simulate_survey(tmp_path, config).reused
    assert not simulate_survey(tmp_path, small_config(binning=8, seed=5)).reused


def test_extra_visits_over_a_sub_region(survey: ReleaseLayout, tmp_path: Path):
    """Repeat visits of a pointing: own names and exposure numbers, only the CCDs on the box.

    Their CCDs join the truth table; a box no CCD of the pointing falls on is refused; a visit
    moved to another boresight says so in its header.
    """
    import shutil

    from astropy.coordinates import SkyCoord

    from lsdr.survey.simulate.simulator import add_exposure

    root = Path(shutil.copytree(survey.root, tmp_path / "copy"))
    layout = ReleaseLayout(root)
    rows = truth_ccds(layout)
    mosaic = rows[(rows["camera"] == "mosaic") & ~rows["superseded"]]
    like = str(mosaic["image_filename"][0]).strip()
    with fits.open(layout.image(like)) as hdus:
        first = hdus[1]
        h, w = first.data.shape
        ra, dec = WCS(first.header).all_pix2world([w / 2], [h / 2], 1)
        all_ccds = {hdu.name for hdu in hdus[1:]}
    box = grid.RaDecBox(ra[0] - 0.01, ra[0] + 0.01, dec[0] - 0.01, dec[0] + 0.01)
    config = small_config()
    new = [add_exposure(root, like, config=config, visit=v, over=box) for v in (1, 2)]
    assert len(set(new)) == 2 and all(p.exists() for p in new)
    expnums = set()
    for path in new:
        with fits.open(path) as hdus:
            expnums.add(int(hdus[0].header["EXPNUM"]))
            ccds = {hdu.name for hdu in hdus[1:]}
            assert ccds and ccds <= all_ccds
            for hdu in hdus[1:]:
                hh, ww = hdu.data.shape
                xs, ys = np.meshgrid(np.linspace(1, ww, 9), np.linspace(1, hh, 9))
                r, d = WCS(hdu.header).all_pix2world(xs.ravel(), ys.ravel(), 1)
                on = (r >= box.ra_min) & (r <= box.ra_max) & (d >= box.dec_min) & (d <= box.dec_max)
                assert on.any(), (path.name, hdu.name)
    assert len(expnums) == 2 and not expnums & {int(e) for e in rows["expnum"]}
    after = truth_ccds(layout)
    assert len(after) == len(rows) + sum(len(fitsio.FITS(str(p))) - 1 for p in new)
    with pytest.raises(UsageError, match="no CCD"):
        add_exposure(root, like, config=config, visit=3, over=grid.RaDecBox(10, 11, 10, 11))
    moved = add_exposure(root, like, config=config, visit=4, at=(ra[0], dec[0]))
    with fits.open(moved) as hdus:
        h2 = hdus[0].header
        assert int(h2["EXPNUM"]) not in expnums
        centre = SkyCoord(h2["RA"], h2["DEC"], unit=("hourangle", "deg"))
        assert abs(centre.ra.deg - ra[0]) < 1e-3 and abs(centre.dec.deg - dec[0]) < 1e-3
