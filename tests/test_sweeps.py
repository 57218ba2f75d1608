"""Sweeps: the declared columns, the boxes, and rows equal to the catalogue rows they came from."""

from __future__ import annotations

import ast
from pathlib import Path

import fitsio
import numpy as np
import pytest
from postprocess_fakes import write_fake_brick

from lsdr.infra.legacypipe_build import LegacypipeBuild
from lsdr.survey.core.bricks import brick_by_name
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.posttractor.sweeps import (
    SWEEP_DTYPE,
    SWEEP_MAIN_DTYPE,
    SweepBox,
    sweep_boxes,
    write_sweep,
)

# 1798p325 (RA 179.70..180.00) ends on the RA 180 box edge where 1801p325 starts;
# 1816p350 (Dec 34.875..35.125) straddles the Dec 35 edge.
BRICKS = ["1798p325", "1801p325", "1804p325", "1816p347", "1816p350"]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> ReleaseLayout:
    """Fake catalogues (g, r, z) for the bricks, some straddling 5° box edges."""
    layout = ReleaseLayout(tmp_path_factory.mktemp("sweeps"))
    rng = np.random.default_rng(4)
    for brick in BRICKS:
        write_fake_brick(layout, brick, rng, n=400, nexp_bands=(), size=60)
    return layout


# The columns of a DR10 sweep file (``sweep/10.0/sweep-*.fits``), in order, typed in from the
# script that writes the published sweeps: SWEEP_DTYPE of legacypipe's
# ``bin/generate-sweep-files.py`` (DR11.1.0, ../shared/vendor; DR10's g, r, i, z and W1-W4),
# without the light-curve columns, which it spins off to ``sweep/10.0-lightcurves/*-lc.fits``
# (../shared/research/legacypipe-facts.md §8).  Never taken from lsdr's declaration; the
# legacypipe test below checks the transcription against the built legacypipe's script.
# Every column not in SWEEP_TYPES is big-endian float32.
SWEEP_MAIN_COLUMNS = (
    "RELEASE", "BRICKID", "BRICKNAME", "OBJID", "TYPE", "RA", "DEC", "RA_IVAR", "DEC_IVAR",
    "DCHISQ", "EBV",
    "FLUX_G", "FLUX_R", "FLUX_I", "FLUX_Z", "FLUX_W1", "FLUX_W2", "FLUX_W3", "FLUX_W4",
    "FLUX_IVAR_G", "FLUX_IVAR_R", "FLUX_IVAR_I", "FLUX_IVAR_Z",
    "FLUX_IVAR_W1", "FLUX_IVAR_W2", "FLUX_IVAR_W3", "FLUX_IVAR_W4",
    "MW_TRANSMISSION_G", "MW_TRANSMISSION_R", "MW_TRANSMISSION_I", "MW_TRANSMISSION_Z",
    "MW_TRANSMISSION_W1", "MW_TRANSMISSION_W2", "MW_TRANSMISSION_W3", "MW_TRANSMISSION_W4",
    "NOBS_G", "NOBS_R", "NOBS_I", "NOBS_Z", "NOBS_W1", "NOBS_W2", "NOBS_W3", "NOBS_W4",
    "RCHISQ_G", "RCHISQ_R", "RCHISQ_I", "RCHISQ_Z",
    "RCHISQ_W1", "RCHISQ_W2", "RCHISQ_W3", "RCHISQ_W4",
    "FRACFLUX_G", "FRACFLUX_R", "FRACFLUX_I", "FRACFLUX_Z",
    "FRACFLUX_W1", "FRACFLUX_W2", "FRACFLUX_W3", "FRACFLUX_W4",
    "FRACMASKED_G", "FRACMASKED_R", "FRACMASKED_I", "FRACMASKED_Z",
    "FRACIN_G", "FRACIN_R", "FRACIN_I", "FRACIN_Z",
    "ANYMASK_G", "ANYMASK_R", "ANYMASK_I", "ANYMASK_Z",
    "ALLMASK_G", "ALLMASK_R", "ALLMASK_I", "ALLMASK_Z",
    "WISEMASK_W1", "WISEMASK_W2",
    "PSFSIZE_G", "PSFSIZE_R", "PSFSIZE_I", "PSFSIZE_Z",
    "PSFDEPTH_G", "PSFDEPTH_R", "PSFDEPTH_I", "PSFDEPTH_Z",
    "GALDEPTH_G", "GALDEPTH_R", "GALDEPTH_I", "GALDEPTH_Z",
    "PSFDEPTH_W1", "PSFDEPTH_W2", "WISE_COADD_ID",
    "SHAPE_R", "SHAPE_R_IVAR", "SHAPE_E1", "SHAPE_E1_IVAR", "SHAPE_E2", "SHAPE_E2_IVAR",
    "FIBERFLUX_G", "FIBERFLUX_R", "FIBERFLUX_I", "FIBERFLUX_Z",
    "FIBERTOTFLUX_G", "FIBERTOTFLUX_R", "FIBERTOTFLUX_I", "FIBERTOTFLUX_Z",
    "REF_CAT", "REF_ID", "REF_EPOCH",
    "GAIA_PHOT_G_MEAN_MAG", "GAIA_PHOT_G_MEAN_FLUX_OVER_ERROR",
    "GAIA_PHOT_BP_MEAN_MAG", "GAIA_PHOT_BP_MEAN_FLUX_OVER_ERROR",
    "GAIA_PHOT_RP_MEAN_MAG", "GAIA_PHOT_RP_MEAN_FLUX_OVER_ERROR",
    "GAIA_ASTROMETRIC_EXCESS_NOISE", "GAIA_DUPLICATED_SOURCE", "GAIA_PHOT_BP_RP_EXCESS_FACTOR",
    "GAIA_ASTROMETRIC_SIGMA5D_MAX", "GAIA_ASTROMETRIC_PARAMS_SOLVED",
    "PARALLAX", "PARALLAX_IVAR", "PMRA", "PMRA_IVAR", "PMDEC", "PMDEC_IVAR",
    "MASKBITS", "FITBITS", "SERSIC", "SERSIC_IVAR",
)  # fmt: skip
SWEEP_LC_COLUMNS = (
    "LC_FLUX_W1", "LC_FLUX_W2", "LC_FLUX_IVAR_W1", "LC_FLUX_IVAR_W2",
    "LC_NOBS_W1", "LC_NOBS_W2", "LC_MJD_W1", "LC_MJD_W2",
    "LC_FRACFLUX_W1", "LC_FRACFLUX_W2", "LC_RCHISQ_W1", "LC_RCHISQ_W2",
    "LC_EPOCH_INDEX_W1", "LC_EPOCH_INDEX_W2",
)  # fmt: skip
"""The light-curve columns (25 WISE epochs each), after WISE_COADD_ID in SWEEP_DTYPE."""
SWEEP_TYPES = {
    "RELEASE": ">i2", "BRICKID": ">i4", "BRICKNAME": "|S8", "OBJID": ">i4", "TYPE": "|S3",
    "RA": ">f8", "DEC": ">f8", "DCHISQ": (">f4", (5,)),
    **{f"NOBS_{b}": ">i2" for b in ("G", "R", "I", "Z", "W1", "W2", "W3", "W4")},
    **{f"{m}_{b}": ">i2" for m in ("ANYMASK", "ALLMASK") for b in ("G", "R", "I", "Z")},
    "WISEMASK_W1": "|u1", "WISEMASK_W2": "|u1", "WISE_COADD_ID": "|S8",
    "REF_CAT": "|S2", "REF_ID": ">i8", "GAIA_DUPLICATED_SOURCE": "|b1",
    "GAIA_ASTROMETRIC_PARAMS_SOLVED": "|u1", "MASKBITS": ">i4", "FITBITS": ">i2",
    **{f"LC_{m}_{w}": (">f4", (25,)) for m in ("FLUX", "FLUX_IVAR", "FRACFLUX", "RCHISQ")
       for w in ("W1", "W2")},
    **{f"LC_{m}_{w}": (">i2", (25,)) for m in ("NOBS", "EPOCH_INDEX") for w in ("W1", "W2")},
    "LC_MJD_W1": (">f8", (25,)), "LC_MJD_W2": (">f8", (25,)),
}  # fmt: skip


def published_dtype(name: str) -> np.dtype:
    """The published numpy dtype of a sweep column."""
    return np.dtype(SWEEP_TYPES.get(name, ">f4"))


def test_sweep_columns_are_the_published_dr10_list():
    """The main file's 130 columns and the 14 light-curve ones: names, order and types."""
    assert len(SWEEP_MAIN_COLUMNS) == 130 and len(set(SWEEP_MAIN_COLUMNS)) == 130
    assert SWEEP_MAIN_DTYPE.names == SWEEP_MAIN_COLUMNS
    after = SWEEP_MAIN_COLUMNS.index("WISE_COADD_ID") + 1
    full = (*SWEEP_MAIN_COLUMNS[:after], *SWEEP_LC_COLUMNS, *SWEEP_MAIN_COLUMNS[after:])
    assert SWEEP_DTYPE.names == full
    for name in full:
        assert SWEEP_DTYPE[name] == published_dtype(name), name
    assert not [n for n in SWEEP_MAIN_DTYPE.names if n.startswith("LC_")]


@pytest.mark.legacypipe
def test_published_list_is_the_real_legacypipes_declaration(legacypipe: LegacypipeBuild):
    """The list typed in above equals SWEEP_DTYPE in the built legacypipe's script, type by type."""
    script = legacypipe.prefix / "legacypipe" / "bin" / "generate-sweep-files.py"
    tree = ast.parse(script.read_text())
    [declaration] = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == ["SWEEP_DTYPE"]
    ]
    assert isinstance(declaration, ast.Call)
    upstream = np.dtype(ast.literal_eval(declaration.args[0]))
    after = SWEEP_MAIN_COLUMNS.index("WISE_COADD_ID") + 1
    full = (*SWEEP_MAIN_COLUMNS[:after], *SWEEP_LC_COLUMNS, *SWEEP_MAIN_COLUMNS[after:])
    assert upstream.names == full
    for name in full:
        assert upstream[name] == published_dtype(name), name


def test_boxes_hold_every_brick_overlapping_them(release: ReleaseLayout):
    """5°×5° boxes; a brick on a box edge belongs to both boxes, a brick ending on one to one."""
    boxes = {(b.ra1, b.dec1): b.bricks for b in sweep_boxes(release, BRICKS)}
    assert boxes == {
        (175.0, 30.0): ("1798p325",),
        (180.0, 30.0): ("1801p325", "1804p325", "1816p347", "1816p350"),
        (180.0, 35.0): ("1816p350",),
    }
    names = [
        release.sweep("10.0", b.ra1, b.dec1, b.ra2, b.dec2).name
        for b in sweep_boxes(release, BRICKS)
    ]
    assert "sweep-180p030-185p035.fits" in names and "sweep-175p030-180p035.fits" in names


def _key(brickid: np.ndarray, objid: np.ndarray) -> np.ndarray:
    return brickid.astype(np.int64) * 1_000_000 + objid


def test_sweep_rows_equal_their_catalogue_rows(release: ReleaseLayout):
    """Every sweep value equals the catalogue's; only primary objects in the box, once each."""
    box = next(b for b in sweep_boxes(release, BRICKS) if (b.ra1, b.dec1) == (180.0, 30.0))
    result = write_sweep(release, box, "10.0")
    assert result.path is not None and result.bands == "g,r,z"
    with fitsio.FITS(result.path) as fits:
        sweep = fits["SWEEP"].read()
        header = fits[0].read_header()
    assert (header["RAMIN"], header["DECMAX"], header["BANDS"]) == (180.0, 35.0, "g,r,z")
    # Columns and types: the published list (fitsio reads FITS strings back as str).
    assert sweep.dtype.names == SWEEP_MAIN_COLUMNS
    for name in SWEEP_MAIN_COLUMNS:
        want = published_dtype(name)
        if want.kind == "S":
            want = np.dtype(f"<U{want.itemsize}")
        assert sweep.dtype[name] == want, (name, sweep.dtype[name], want)

    keys = _key(sweep["BRICKID"], sweep["OBJID"])
    assert len(np.unique(keys)) == len(sweep)
    expected_total = 0
    for brick in box.bricks:
        cat = fitsio.read(str(release.tractor(brick)), ext="CATALOG")
        sel = (
            cat["brick_primary"]
            & (cat["ra"] >= box.ra1)
            & (cat["ra"] < box.ra2)
            & (cat["dec"] >= box.dec1)
            & (cat["dec"] < box.dec2)
        )
        expected_total += int(sel.sum())
        rows = sweep[sweep["BRICKNAME"] == brick]
        assert len(rows) == sel.sum()
        src = cat[sel]
        for name in SWEEP_MAIN_DTYPE.names:
            if name.lower() in cat.dtype.names:
                np.testing.assert_array_equal(rows[name], src[name.lower()], err_msg=name)
    assert len(sweep) == result.rows == expected_total
    assert np.all(sweep["FLUX_I"] == 0) and np.all(sweep["MW_TRANSMISSION_I"] == 1)
    assert np.all(sweep["RA"] >= 180) and np.all(sweep["DEC"] < 35)


def test_straddling_brick_splits_between_boxes(release: ReleaseLayout):
    """1816p350's primary objects go to the box below or above Dec 35, none lost or doubled."""
    cat = fitsio.read(str(release.tractor("1816p350")), ext="CATALOG")
    primary = int(cat["brick_primary"].sum())
    counts = []
    for box in sweep_boxes(release, ["1816p350"]):
        result = write_sweep(release, box, "10.0")
        assert result.path is not None
        sweep = fitsio.read(result.path, ext="SWEEP")
        counts.append(int(np.sum(sweep["BRICKNAME"] == "1816p350")))
    assert len(counts) == 2 and min(counts) > 0 and sum(counts) == primary


def test_missing_catalogue_and_empty_box(release: ReleaseLayout):
    """A brick without catalogue is counted; a box without primary objects writes no file."""
    b = brick_by_name("1801p325")
    box = SweepBox(180.0, 30.0, 185.0, 35.0, ("1801p325", "1801p327"))
    result = write_sweep(release, box, "9.9")
    assert (result.bricks_read, result.bricks_missing) == (1, 1)
    assert result.rows > 0
    empty = SweepBox(175.0, 30.0, 180.0, 35.0, ("1801p325",))
    result = write_sweep(release, empty, "9.9")
    assert result.path is None and result.rows == 0
    assert not release.sweep("9.9", 175.0, 30.0, 180.0, 35.0).exists()
    assert b.ra1 == 180.0  # the reason the box below is empty
    assert not list(Path(release.sweep_dir("9.9")).glob("tmp-*"))


def test_rerun_rewrites_the_same_table(release: ReleaseLayout):
    """Writing a box twice gives the same rows (a unit is idempotent)."""
    box = sweep_boxes(release, ["1804p325"])[0]
    first = fitsio.read(write_sweep(release, box, "8.0").path or "", ext="SWEEP")
    second = fitsio.read(write_sweep(release, box, "8.0").path or "", ext="SWEEP")
    assert np.array_equal(first, second)
