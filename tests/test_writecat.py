"""writecat: derived columns, the tractor and tractor-i files, the checksum file, reading back."""

from __future__ import annotations

import subprocess
from pathlib import Path

import fitsio
import numpy as np
import numpy.lib.recfunctions as rfn
import pytest
from test_tractorschema import run_real_runbrick

from lsdr.infra.legacypipe_build import LegacypipeBuild
from lsdr.survey.core.errors import InputFileError, UsageError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.runbrick import tractorschema as ts
from lsdr.survey.runbrick.types import BrickGeometry
from lsdr.survey.runbrick.writecat import (
    brick_primary,
    brick_products,
    finalize_catalog,
    read_catalog,
    write_catalog,
)

BANDS = ("g", "r", "z")
BRICK = "1102p240"


@pytest.fixture
def geom() -> BrickGeometry:
    """A small (400²) grid on brick 1102p240."""
    return BrickGeometry.for_brick(BRICK, width=400, height=400)


@pytest.fixture
def layout(tmp_path: Path) -> ReleaseLayout:
    """An empty release directory."""
    return ReleaseLayout(tmp_path / "release")


def sources(geom: BrickGeometry) -> np.ndarray:
    """Six sources: four inside the grid (one of them not regular), two outside it."""
    wcs = geom.wcs()
    xy = [(300.0, 50.0), (20.0, 390.0), (200.0, 200.0), (100.0, 100.0), (-40.0, 10.0), (450, 9)]
    ra, dec = wcs.pixel_to_radec([p[0] + 1 for p in xy], [p[1] + 1 for p in xy])
    cat = ts.empty_catalog(len(xy), BANDS)
    cat["ra"], cat["dec"] = ra, dec
    cat["type"] = ["PSF", "REX", "DEV", "EXP", "PSF", "SER"]
    cat["shape_r"] = [0.0, 0.8, 1.5, 1.0, 0.0, 2.0]
    cat["shape_e1"] = [0.3, 0.2, 0.1, 0.1, 0.0, 0.1]
    cat["sersic"] = [0, 0, 0, 0, 0, 2.5]
    for b in BANDS:
        cat[f"flux_{b}"] = [10.0, 5.0, 20.0, 3.0, 7.0, 1.0]
        cat[f"flux_ivar_{b}"] = [4.0, 4.0, 1.0, 0.0, 2.0, 1.0]
        cat[f"fracin_{b}"] = [1.0, 1.0, 1.0, 1.0, 1.0, 1e-4]
        cat[f"psfsize_{b}"] = 1.2
    return cat


def finalized(geom: BrickGeometry) -> np.ndarray:
    """The six sources after finalize_catalog (source 3 not regular)."""
    regular = [True, True, True, False, True, True]
    return finalize_catalog(
        sources(geom), geom, bands=BANDS, release=10000, ebv=0.05, regular=regular
    )


def test_finalize_orders_objids_and_fills_columns(geom: BrickGeometry):
    """objid: regular in-bounds by RA, then other in-bounds, then out-of-bounds; columns filled."""
    src = sources(geom)
    cat = finalized(geom)
    assert list(cat["objid"]) == list(range(6))
    # in-bounds regular sources (0, 1, 2) by RA (x decreases with RA), then source 3, then 4, 5.
    expect_x = [300.0, 200.0, 20.0, 100.0, 450.0, -40.0]
    assert cat["bx"] == pytest.approx(expect_x, abs=1e-3)
    assert (cat["brickid"] == geom.brickid).all() and (cat["brickname"] == b"1102p240").all()
    assert (cat["release"] == 10000).all()
    assert np.allclose(cat["mw_transmission_g"], 10 ** (-3.214 * 0.05 / 2.5))
    assert np.allclose(cat["mw_transmission_w1"], 10 ** (-0.184 * 0.05 / 2.5))
    assert cat["ebv"] == pytest.approx(0.05)
    by_type = {t.decode(): row for t, row in zip(cat["type"], cat, strict=True)}
    assert by_type["DEV"]["sersic"] == 4 and by_type["EXP"]["sersic"] == 1
    assert by_type["REX"]["sersic"] == 1 and by_type["REX"]["shape_e1"] == 0
    assert by_type["SER"]["sersic"] == pytest.approx(2.5)
    assert by_type["EXP"]["flux_g"] == 0  # flux_ivar 0 → flux 0
    assert by_type["SER"]["flux_g"] == 0 and by_type["SER"]["flux_ivar_g"] == 0  # fracin < 1e-3
    psf = cat[np.isclose(cat["bx"], 300.0, atol=1e-3)][0]
    assert psf["shape_e1"] == 0 and psf["flux_g"] == 10
    # σ = √2 (1.2/2.3548)/S/N with S/N 20 per band, three bands.
    sigma = np.sqrt(2) * 1.2 / (2 * np.sqrt(2 * np.log(2))) / 20
    assert psf["ra_ivar"] == pytest.approx(3 / sigma**2 * 3600**2, rel=1e-5)
    assert psf["dec_ivar"] == psf["ra_ivar"]
    assert len(np.unique(src["ra"])) == 6


def test_finalize_without_dust_map_is_the_null(geom: BrickGeometry):
    """No ebv: ebv 0 and transmission 1; a maskbits map is sampled at the rounded pixel."""
    mb = np.zeros((400, 400), np.int32)
    mb[50, 300] = 0x2
    cat = finalize_catalog(sources(geom), geom, bands=BANDS, release=1, maskbits_map=mb)
    assert (cat["ebv"] == 0).all() and (cat["mw_transmission_z"] == 1).all()
    assert cat["maskbits"][np.isclose(cat["bx"], 300.0, atol=1e-3)][0] == 0x2
    assert (cat["maskbits"] != 0).sum() == 1


def test_brick_primary_bounds_and_wrap():
    """brick_primary is ra1 ≤ ra < ra2, dec1 ≤ dec < dec2, and wraps through RA 0."""
    g = BrickGeometry("0000p000", 1, 0.0, 0.0, 359.875, 0.125, -0.125, 0.125, 100, 100)
    ra = np.array([359.9, 0.1, 0.125, 359.875, 180.0])
    dec = np.array([0.0, 0.124, 0.0, -0.125, 0.0])
    assert list(brick_primary(ra, dec, g)) == [True, True, False, True, False]


def test_write_catalog_files_and_headers(layout: ReleaseLayout, geom: BrickGeometry):
    """tractor: HDU CATALOG, schema columns in order, units, header; tractor-i: all columns."""
    cat = finalized(geom)
    extra = np.zeros(len(cat), dtype=[("blob", "i4"), ("cpu_source", "f4")])
    extra["blob"] = np.arange(len(cat))
    full = rfn.merge_arrays([cat, extra], flatten=True)
    paths = write_catalog(
        layout,
        geom,
        full,
        bands=BANDS,
        release=10000,
        header_extra={"LSDRVER": ("0.1.0", "lsdr version")},
    )
    assert paths.tractor == layout.tractor(BRICK) and paths.tractor_i == layout.tractor_i(BRICK)
    with fitsio.FITS(str(paths.tractor)) as f:
        assert f[1].get_extname() == "CATALOG"
        hdr = f[0].read_header()
        thdr = f[1].read_header()
        data = f[1].read()
    assert list(data.dtype.names) == list(ts.tractor_dtype(BANDS).names)
    units = {thdr[f"TTYPE{i}"]: thdr.get(f"TUNIT{i}", "") for i in range(1, thdr["TFIELDS"] + 1)}
    assert {k: v for k, v in units.items() if v} == ts.tractor_units(BANDS)
    assert [hdr[f"APRAD{i}"] for i in range(8)] == list(ts.APRAD)
    assert [hdr[f"WAPRAD{i}"] for i in range(5)] == list(ts.WAPRAD)
    assert hdr["BANDS"] == "g,r,z" and hdr["RELEASE"] == 10000 and hdr["BRICKNAM"] == BRICK
    assert hdr["LSDRENGN"] == "lite" and hdr["LSDRVER"] == "0.1.0"
    assert {k[3:]: hdr[k] for k in hdr if k.startswith("MB_")} == ts.maskbits(BANDS)
    assert {k[3:]: hdr[k] for k in hdr if k.startswith("FB_")} == ts.FITBITS
    assert hdr["MBIT_10"] == "BAILOUT" and hdr["FBIT_13"] == "ITERATIVE"
    with fitsio.FITS(str(paths.tractor_i)) as f:
        assert f[1].get_extname() == "CATALOG-INTERMEDIATE"
        names = f[1].get_colnames()
    assert names[-2:] == ["blob", "cpu_source"] and len(names) == len(data.dtype.names) + 2
    back = read_catalog(paths.tractor)
    assert back.dtype == ts.tractor_dtype(BANDS)
    for name in back.dtype.names:
        assert np.array_equal(back[name], cat[name]), name
    assert len(read_catalog(paths.tractor_i)) == len(cat)
    assert not list(layout.root.rglob("tmp-*"))


def test_write_is_deterministic(layout: ReleaseLayout, geom: BrickGeometry, tmp_path: Path):
    """The same catalogue gives byte-identical files (and checksum lines)."""
    first = write_catalog(layout, geom, finalized(geom), bands=BANDS, release=10000)
    text = first.checksums.read_text()
    other = ReleaseLayout(tmp_path / "other")
    second = write_catalog(other, geom, finalized(geom), bands=BANDS, release=10000)
    assert second.checksums.read_text() == text
    assert first.tractor.read_bytes() == second.tractor.read_bytes()


def test_checksums_pass_sha256sum(layout: ReleaseLayout, geom: BrickGeometry):
    """The checksum file covers tractor, tractor-i, coadd and metrics; sha256sum -c passes.

    Temporary files and a bright-neighbour backup left from an earlier pass are not listed.
    """
    coadd = layout.coadd(BRICK, "image", "g")
    coadd.parent.mkdir(parents=True)
    coadd.write_bytes(b"image")
    layout.coadd_jpeg(BRICK, "image").write_bytes(b"jpeg")
    (coadd.parent / "tmp-123-legacysurvey-1102p240-model-g.fits.fz").write_bytes(b"partial")
    layout.coadd_maskbits_orig(BRICK).write_bytes(b"a bright-neighbour backup of a run before")
    blobs = layout.metrics(BRICK, "blobs")
    blobs.parent.mkdir(parents=True)
    blobs.write_bytes(b"blobs")
    (blobs.parent / "blobs-1102p237.fits.gz").write_bytes(b"another brick")
    paths = write_catalog(layout, geom, finalized(geom), bands=BANDS, release=10000)
    listed = [line.split(" *", 1)[1] for line in paths.checksums.read_text().splitlines()]
    assert listed == [
        "coadd/110/1102p240/legacysurvey-1102p240-image-g.fits.fz",
        "coadd/110/1102p240/legacysurvey-1102p240-image.jpg",
        "metrics/110/blobs-1102p240.fits.gz",
        "tractor-i/110/tractor-i-1102p240.fits",
        "tractor/110/tractor-1102p240.fits",
    ]
    assert [p.relative_to(layout.root).as_posix() for p in brick_products(layout, BRICK)] == listed
    rel = paths.checksums.relative_to(layout.root).as_posix()
    ok = subprocess.run(["sha256sum", "-c", rel], cwd=layout.root, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count(": OK") == 5
    coadd.write_bytes(b"changed")
    bad = subprocess.run(["sha256sum", "-c", rel], cwd=layout.root, capture_output=True, text=True)
    assert bad.returncode != 0 and "FAILED" in bad.stdout


def test_write_refuses_catalogues_off_schema(layout: ReleaseLayout, geom: BrickGeometry):
    """A catalogue lacking a schema column is refused and nothing is written."""
    cat = finalized(geom)
    names = [n for n in cat.dtype.names if n != "nobs_r"]
    with pytest.raises(UsageError, match="missing nobs_r"):
        write_catalog(layout, geom, cat[names], bands=BANDS, release=1)
    with pytest.raises(UsageError, match="wise_x"):
        write_catalog(layout, geom, ts.empty_catalog(1, BANDS, wise=False), bands=BANDS, release=1)
    assert not layout.tractor(BRICK).exists() and not layout.brick_checksums(BRICK).exists()
    # The same catalogue without WISE columns is fine for wise=False.
    paths = write_catalog(
        layout, geom, ts.empty_catalog(2, BANDS, wise=False), bands=BANDS, release=1, wise=False
    )
    assert "flux_w1" not in read_catalog(paths.tractor).dtype.names
    assert "WAPRAD0" not in fitsio.read_header(str(paths.tractor), 0)


def test_read_catalog_errors_name_the_file(layout: ReleaseLayout, geom: BrickGeometry):
    """Missing, truncated or off-schema catalogues raise InputFileError naming the file."""
    paths = write_catalog(layout, geom, finalized(geom), bands=BANDS, release=10000)
    with pytest.raises(InputFileError, match="not found"):
        read_catalog(layout.root / "nope.fits")

    truncated = layout.root / "truncated.fits"
    data = paths.tractor.read_bytes()
    truncated.write_bytes(data[: len(data) - 4000])
    with pytest.raises(InputFileError, match=r"truncated\.fits"):
        read_catalog(truncated)

    good = read_catalog(paths.tractor)
    off = layout.root / "off.fits"
    names = [n for n in good.dtype.names if n != "fracin_z"]
    with fitsio.FITS(str(off), "rw", clobber=True) as f:
        f.write(None, header=fitsio.read_header(str(paths.tractor), 0))
        f.write(rfn.repack_fields(good[names]), extname="CATALOG")
    with pytest.raises(
        InputFileError, match=r"off.fits \[CATALOG\].*missing columns \['fracin_z'\]"
    ):
        read_catalog(off)

    swapped = layout.root / "swapped.fits"
    order = list(good.dtype.names)
    i, j = order.index("ra"), order.index("dec")
    order[i], order[j] = order[j], order[i]
    with fitsio.FITS(str(swapped), "rw", clobber=True) as f:
        f.write(None, header=fitsio.read_header(str(paths.tractor), 0))
        f.write(rfn.repack_fields(good[order]), extname="CATALOG")
    with pytest.raises(InputFileError, match=r"column 9 \(TTYPE9\) is dec, expected ra"):
        read_catalog(swapped)

    retyped = layout.root / "retyped.fits"
    dt = [(n, "f8") if n == "flux_g" else (n, good.dtype[n]) for n in good.dtype.names]
    wide = np.zeros(
        len(good), [(n, d.base, d.shape) if hasattr(d, "shape") else (n, d) for n, d in dt]
    )
    for n in good.dtype.names:
        wide[n] = good[n]
    with fitsio.FITS(str(retyped), "rw", clobber=True) as f:
        f.write(None, header=fitsio.read_header(str(paths.tractor), 0))
        f.write(wide, extname="CATALOG")
    with pytest.raises(InputFileError, match=r"flux_g is [<>]f8, expected <f4"):
        read_catalog(retyped)


def test_custom_brick_names_fit(tmp_path: Path):
    """A runbrick custom brick (custom-…) gets a wide enough brickname column."""
    layout = ReleaseLayout(tmp_path)
    g = BrickGeometry("custom-186744p25462", 0, 186.744, 25.462, 186.7, 186.8, 25.4, 25.5, 50, 50)
    cat = finalize_catalog(ts.empty_catalog(1, BANDS), g, bands=BANDS, release=1)
    wide = np.zeros(
        1, [(n, "S19") if n == "brickname" else (n, cat.dtype[n]) for n in cat.dtype.names]
    )
    for n in cat.dtype.names:
        wide[n] = cat[n]
    wide["brickname"] = g.brickname
    paths = write_catalog(layout, g, wide, bands=BANDS, release=1)
    assert read_catalog(paths.tractor)["brickname"][0] == b"custom-186744p25462"


@pytest.mark.legacypipe
def test_reads_real_legacypipe_catalogue(tmp_path: Path, legacypipe: LegacypipeBuild):
    """read_catalog accepts runbrick's own tractor file (dr11, no WISE) and refuses it as dr10."""
    path = run_real_runbrick(
        legacypipe,
        "testcase6",
        tmp_path,
        [
            "--brick",
            "1102p240",
            "--zoom",
            "500",
            "600",
            "650",
            "750",
            "--force-all",
            "--no-write",
            "--no-wise",
        ],
    )
    cat = read_catalog(path)
    assert len(cat) > 0 and set(cat["type"]) <= {t.encode() for t in ts.SOURCE_TYPES}
    assert cat.dtype == ts.tractor_dtype(BANDS, release_flavour="dr11", wise=False)
    assert (cat["ref_id"][cat["ref_cat"] == b""] == 0).all()  # legacypipe's null ref_id is 0
    with pytest.raises(InputFileError, match="dr10 tractor schema"):
        read_catalog(path, release_flavour="dr10")
    # Its checksum file lists paths relative to the output directory, as ours does.
    out = path.parents[2]
    sums = out / "tractor" / "110" / "brick-1102p240.sha256sum"
    ok = subprocess.run(["sha256sum", "-c", str(sums.relative_to(out))], cwd=out)
    assert ok.returncode == 0
    theirs = sorted(line.split(" *", 1)[1] for line in sums.read_text().splitlines())
    ours = [p.relative_to(out).as_posix() for p in brick_products(ReleaseLayout(out), BRICK)]
    assert ours == theirs
