"""The lite runbrick's remaining products: maskbits, depth table, model/resid JPEGs, metrics."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import fitsio
import numpy as np
import pytest
from PIL import Image
from runbrick_survey import BRICK, prepared_survey, private_copy

from lsdr.survey.core.bricks import brick_radec
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.runbrick import tractorschema as ts
from lsdr.survey.runbrick.catalog import maskbits_image
from lsdr.survey.runbrick.depthtable import DepthTable, depth_bins, depth_mag
from lsdr.survey.runbrick.dqmaps import dq_bits
from lsdr.survey.runbrick.jpeg import residual_images, rgb_linear
from lsdr.survey.runbrick.metrics import write_blobmap, write_reference
from lsdr.survey.runbrick.options import RunbrickOptions
from lsdr.survey.runbrick.primary import unique_pixels, unique_pixels_direct
from lsdr.survey.runbrick.refs import REFS_DTYPE
from lsdr.survey.runbrick.stages import run_brick
from lsdr.survey.runbrick.tims import read_tims, select_ccds
from lsdr.survey.runbrick.types import BrickGeometry
from lsdr.survey.runbrick.writecat import brick_primary

BANDS = ("g", "r", "z")
DQ = ts.DQ_BITS


# -- NPRIMARY in pixel space -------------------------------------------------------------------


def old_nprimary(geom: BrickGeometry) -> np.ndarray:
    """NPRIMARY as ``maskbits_image`` computed it before: RA/Dec of every pixel."""
    ys, xs = np.mgrid[0 : geom.height, 0 : geom.width]
    ra, dec = geom.wcs().pixel_to_radec(xs.ravel() + 1.0, ys.ravel() + 1.0)
    return ~brick_primary(ra, dec, geom).reshape(geom.height, geom.width)


@pytest.mark.parametrize(
    ("ra", "dec", "size", "pixscale"),
    [
        (180.4, 32.5, 300, 3.5),  # grid wider than the brick: a margin of NPRIMARY pixels
        (0.01, 0.0, 301, 3.0),  # odd size, next to RA 0
        (359.99, -45.0, 200, 6.0),  # last brick before RA 360
        (120.0, -60.3, 240, 4.5),
        (200.0, 84.5, 300, 3.5),  # bricks span 2.5° of RA here
        (45.0, 89.9, 200, 6.0),  # polar cap: the per-pixel fallback
        (180.4, 32.5, 500, 0.262),  # inside the brick: no NPRIMARY pixel
    ],
)
def test_nprimary_equals_the_per_pixel_radec_test(ra, dec, size, pixscale):
    """The pixel-space unique area equals testing every pixel's RA/Dec against the brick."""
    geom = BrickGeometry.for_brick(
        brick_radec(ra, dec).brickname, width=size, height=size, pixscale=pixscale
    )
    want = old_nprimary(geom)
    bits = ts.maskbits(BANDS)
    got = (maskbits_image(geom, bits, None, None) & bits["NPRIMARY"]) != 0
    assert np.array_equal(got, want)
    assert np.array_equal(unique_pixels(geom), unique_pixels_direct(geom))
    if size == 300 and dec < 80:
        assert 0 < want.sum() < want.size / 2


@pytest.mark.parametrize(
    "zoom",
    [(3300, 3600, 0, 250), (1700, 1950, 1600, 1800), (3500, 3600, 3500, 3600)],
)
def test_nprimary_of_zoomed_grids(zoom):
    """--zoom grids (brick centre off the grid's middle, or off the grid) give the same pixels."""
    geom = BrickGeometry.for_brick(BRICK, zoom=zoom)
    want = old_nprimary(geom)
    assert np.array_equal(~unique_pixels(geom), want)
    if zoom[1] == 3600:
        assert want.any() and not want.all()


# -- DQ codes -> bits ----------------------------------------------------------------------------


def test_cp_codes_become_legacypipe_dq_bits():
    """Codes 1-8 map as remap_dq_cp_codes; Mosaic drops 7 and 8; a bad pixel by a saturated one."""
    codes = np.array([[0, 1, 2, 3, 4, 5, 6, 7, 8]], np.int16)
    want = [0, DQ["badpix"], DQ["badpix"], DQ["satur"], DQ["bleed"], DQ["cr"], DQ["badpix"]]
    assert list(dq_bits(codes, "decam")[0]) == [*want, DQ["trans"], 0]
    assert list(dq_bits(codes, "mosaic")[0]) == [*want, 0, 0]
    lone = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 3]], np.int16)
    bits = dq_bits(lone, "90prime")
    assert bits[0, 0] == DQ["badpix"] and bits[2, 1] == DQ["satur"] == bits[2, 2]


# -- depth table ----------------------------------------------------------------------------------


def test_depth_table_counts_every_unique_pixel(tmp_path: Path):
    """Uncovered pixels land in the first bin, covered ones in their 5σ-depth bin; sum = unique."""
    unique = np.zeros((40, 50), bool)
    unique[5:35, 5:45] = True
    mag = 23.04  # inside the 23.0-23.1 bin
    iv = 25.0 * 10 ** (2 * (mag / 2.5 - 9.0))  # (5 / 5σ flux)²
    psf = np.zeros(unique.shape, np.float32)
    psf[:, 25:] = iv
    table = DepthTable(unique, ("g", "r"))
    table.add("g", psf, psf * 4.0)  # galaxy depth 2.5·log10(2) = 0.75 mag deeper
    path = table.write(tmp_path / "d.fits")
    rows = fitsio.read(path, ext="DEPTH")
    assert rows.dtype.names == (
        "depthlo",
        "depthhi",
        "counts_ptsrc_g",
        "counts_gal_g",
        "counts_ptsrc_r",
        "counts_gal_r",
    )
    bins = depth_bins()
    assert len(rows) == 50 and rows["depthlo"][0] == 0 and rows["depthhi"][-1] == 100
    assert rows["depthlo"][1] == pytest.approx(20.1) and rows["depthhi"][-2] == pytest.approx(24.9)
    assert depth_mag(np.float32([iv]))[0] == pytest.approx(mag, abs=1e-4)
    n_unique, n_covered = int(unique.sum()), int(unique[:, 25:].sum())
    for column in ("counts_ptsrc_g", "counts_gal_g", "counts_ptsrc_r", "counts_gal_r"):
        assert rows[column].sum() == n_unique
    assert rows["counts_ptsrc_g"][0] == n_unique - n_covered
    at = np.searchsorted(bins, mag, side="right") - 1
    assert rows["counts_ptsrc_g"][at] == n_covered and rows["depthlo"][at] == pytest.approx(23.0)
    gal = np.searchsorted(bins, mag + 2.5 * np.log10(2.0), side="right") - 1
    assert rows["counts_gal_g"][gal] == n_covered
    assert rows["counts_ptsrc_r"][0] == n_unique  # band without coverage
    assert path.read_bytes() == table.write(tmp_path / "e.fits").read_bytes()


# -- residual JPEG ---------------------------------------------------------------------------------


def test_residual_picture_is_grey_where_the_model_fits():
    """A zero residual maps to mid-grey; outside the unique area the residual is zeroed."""
    img = {"g": np.full((4, 6), 0.05, np.float32), "r": np.full((4, 6), -0.2, np.float32)}
    mod = {"g": np.zeros((4, 6), np.float32), "r": np.full((4, 6), -0.2, np.float32)}
    iv = {b: np.ones((4, 6), np.float32) for b in img}
    unique = np.ones((4, 6), bool)
    unique[:, 0] = False
    res = residual_images(img, mod, iv, unique)
    assert (res["r"] == 0).all() and (res["g"][:, 0] == 0).all() and (res["g"][:, 1:] > 0).all()
    rgb = rgb_linear(res)
    assert rgb.shape == (4, 6, 3)
    assert (rgb[:, :, 1] == 128).all()  # r → green: residual 0
    assert rgb[0, 0, 2] == 128 and rgb[0, 1, 2] == 255  # g → blue: 0.05·6 = 0.3 > 0.1 → white


# -- metrics -----------------------------------------------------------------------------------


def test_metrics_files_are_legacypipe_named_and_reproducible(tmp_path: Path):
    """reference-<brick>.fits and blobs-<brick>.fits.gz read back and rewrite byte for byte."""
    geom = BrickGeometry.for_brick(BRICK, width=60, height=40)
    layout = ReleaseLayout(tmp_path / "rel")
    refs = np.zeros(2, REFS_DTYPE)
    refs["ref_cat"], refs["ref_id"], refs["mag"] = b"G2", [7, 9], [12.0, 15.0]
    refs["radius"], refs["isbright"], refs["ismedium"] = [0.01, 0.005], [True, False], True
    blobmap = np.full((40, 60), -1, np.int32)
    blobmap[10:20, 5:15] = 0
    ref_path = write_reference(layout, geom, refs)
    blob_path = write_blobmap(layout, geom, blobmap)
    assert ref_path == tmp_path / "rel/metrics/180/reference-1804p325.fits"
    assert blob_path == tmp_path / "rel/metrics/180/blobs-1804p325.fits.gz"
    table = fitsio.read(ref_path, ext="REFERENCES")
    assert list(table["ref_id"]) == [7, 9] and table["isgaia"].all() and not table["istycho"].any()
    assert list(table["radius_pix"]) == [int(np.ceil(0.01 * 3600 / 0.262)), 69]
    data, hdr = fitsio.read(blob_path, ext="BLOB-MAP", header=True)
    assert np.array_equal(data, blobmap) and hdr["IMTYPE"] == "blobmap"
    with gzip.open(blob_path) as f:
        assert f.read(6) == b"SIMPLE"
    before = (ref_path.read_bytes(), blob_path.read_bytes())
    write_reference(layout, geom, refs)
    write_blobmap(layout, geom, blobmap)
    assert (ref_path.read_bytes(), blob_path.read_bytes()) == before
    assert write_reference(layout, geom, refs[:0]) is None


# -- a small brick end to end ------------------------------------------------------------------


@pytest.fixture(scope="module")
def brick_run(tmp_path_factory: pytest.TempPathFactory) -> ReleaseLayout:
    """The synthetic survey run through every stage on a 300² grid of 3.5″ pixels.

    The grid is wider than the brick (so it has NPRIMARY pixels) and holds saturated stars;
    the fitblobs and coadds states are pickled for the reruns.
    """
    layout = private_copy(
        prepared_survey(tmp_path_factory), tmp_path_factory.mktemp("products") / "rel"
    )
    opts = RunbrickOptions(width=300, height=300, pixscale=3.5, write_stages=("fitblobs", "coadds"))
    result = run_brick(layout, BRICK, opts)
    assert result.status == "done"
    return layout


def read_maskbits(layout: ReleaseLayout) -> tuple[np.ndarray, dict[str, int]]:
    """The maskbits image and its MB_* bit values."""
    mask, hdr = fitsio.read(layout.coadd_maskbits(BRICK), ext="MASKBITS", header=True)
    return mask, {k[3:]: int(hdr[k]) for k in hdr if k.startswith("MB_")}


@pytest.mark.slow
def test_saturated_and_masked_pixels_set_their_maskbits(brick_run):
    """Saturated CCD pixels carry SATUR_<b>; the catalogue's any/allmask and maskbits match."""
    layout = brick_run
    mask, bits = read_maskbits(layout)
    assert bits == ts.maskbits(BANDS)
    geom = BrickGeometry.for_brick(BRICK, width=300, height=300, pixscale=3.5)
    ys, xs = np.mgrid[0:300, 0:300]
    ra, dec = geom.wcs().pixel_to_radec(xs.ravel() + 1.0, ys.ravel() + 1.0)
    tims = read_tims(layout, geom, BANDS, select_ccds(layout, geom, BANDS))
    counted = {"satur": 0, "cr": 0}
    for tim in tims:  # one exposure per band: a DQ flag at the nearest CCD pixel is "all"
        u, v = tim.wcs.radec_to_pixel(ra, dec)
        iu, iv = np.rint(u - 1 - tim.x0).astype(int), np.rint(v - 1 - tim.y0).astype(int)
        h, w = tim.shape
        on = (iu >= 3) & (iu < w - 3) & (iv >= 3) & (iv < h - 3)
        code = np.zeros(len(ra), int)
        code[on] = tim.dq[iv[on], iu[on]]
        pixel_bits = mask.ravel()
        b = tim.band.upper()
        for name, dq_code, want in (
            ("satur", 3, bits[f"SATUR_{b}"] | bits[f"ALLMASK_{b}"]),
            ("cr", 5, bits[f"ALLMASK_{b}"]),
        ):
            hit = code == dq_code
            assert ((pixel_bits[hit] & want) == want).all(), (tim.name, name)
            counted[name] += int(hit.sum())
    assert counted["satur"] > 0 and counted["cr"] > 0, counted
    grown = [(mask & bits[f"SATUR_{b.upper()}"]) != 0 for b in BANDS]
    assert max(int(g.sum()) for g in grown) >= 41  # a seed grows into a 41-pixel diamond
    cat = fitsio.read(layout.tractor(BRICK))
    ix = np.clip(np.rint(cat["bx"]).astype(int), 0, 299)
    iy = np.clip(np.rint(cat["by"]).astype(int), 0, 299)
    assert np.array_equal(cat["maskbits"], mask[iy, ix])
    for band in BANDS:
        allmask = cat[f"allmask_{band}"]
        assert np.array_equal(
            allmask != 0, (cat["maskbits"] & bits[f"ALLMASK_{band.upper()}"]) != 0
        )
        assert ((allmask & ~cat[f"anymask_{band}"]) == 0).all()
        assert (cat[f"anymask_{band}"] != 0).any()
        assert (cat[f"nobs_{band}"] >= 1).mean() > 0.8
    nprimary = (mask & bits["NPRIMARY"]) != 0
    assert np.array_equal(nprimary, old_nprimary(geom)) and nprimary.any()


@pytest.mark.slow
def test_depth_table_jpegs_and_metrics_of_a_brick(brick_run):
    """Depth table over the unique pixels, JPEGs of the grid's size, metrics in the checksums."""
    layout = brick_run
    mask, bits = read_maskbits(layout)
    unique = (mask & bits["NPRIMARY"]) == 0
    rows = fitsio.read(layout.coadd_depth_table(BRICK), ext="DEPTH")
    for band in BANDS:
        depth = fitsio.read(layout.coadd(BRICK, "depth", band))
        assert rows[f"counts_ptsrc_{band}"].sum() == unique.sum()
        assert rows[f"counts_gal_{band}"].sum() == unique.sum()
        deep = unique & (depth_mag(depth) >= 20.1)
        assert rows[f"counts_ptsrc_{band}"][1:].sum() == deep.sum() > 0
        assert rows[f"counts_ptsrc_{band}"][0] >= (unique & (depth == 0)).sum() > 0
    for kind in ("image", "model", "resid"):
        with Image.open(layout.coadd_jpeg(BRICK, kind)) as im:
            assert im.size == (300, 300) and im.mode == "RGB"
            pixels = np.asarray(im)
        if kind == "resid":  # zeroed outside the unique area: mid-grey (north up: rows flipped)
            assert abs(np.median(pixels[::-1][~unique][:, 1].astype(int)) - 128) <= 3
    blobs = fitsio.read(layout.metrics(BRICK, "blobs"), ext="BLOB-MAP")
    assert blobs.shape == (300, 300) and blobs.max() >= 0 and blobs.min() == -1
    refs = fitsio.read(layout.metrics(BRICK, "reference"), ext="REFERENCES")
    assert len(refs) > 0 and (refs["ref_cat"] == "G2").all()
    listed = layout.brick_checksums(BRICK).read_text()
    for path in (
        layout.coadd_depth_table(BRICK),
        layout.coadd_jpeg(BRICK, "model"),
        layout.coadd_jpeg(BRICK, "resid"),
        layout.coadd_maskbits(BRICK),
        layout.metrics(BRICK, "blobs"),
        layout.metrics(BRICK, "reference"),
    ):
        assert f" *{path.relative_to(layout.root).as_posix()}\n" in listed


@pytest.mark.slow
def test_rerun_stages_rewrite_identical_products(brick_run):
    """Rerunning coadds, then writecat, from the pickles rewrites byte-identical files."""
    layout = brick_run
    sums = layout.brick_checksums(BRICK)
    before = sums.read_text()
    rel = sums.relative_to(layout.root).as_posix()
    for stage, loaded in (("coadds", "fitblobs"), ("writecat", "coadds")):
        again = RunbrickOptions(width=300, height=300, pixscale=3.5, stages=(stage,))
        result = run_brick(layout, BRICK, again)
        assert result.stages_run == (stage,) and result.stages_loaded == (loaded,)
        ok = subprocess.run(["sha256sum", "-c", rel], cwd=layout.root, capture_output=True)
        assert ok.returncode == 0, ok.stdout.decode() + ok.stderr.decode()
    assert sums.read_text() == before
