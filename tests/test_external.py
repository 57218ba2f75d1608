"""External matches: configuration, stand-ins and the row-aligned match files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fitsio
import numpy as np
import pytest

from lsdr.survey.core.errors import InputFileError, UsageError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.posttractor.external import (
    SDSS_CATALOGUES,
    ExternalCatalogue,
    catalogues_from_yaml,
    default_catalogues,
    match_external,
    read_matched,
    release_catalogues,
)
from lsdr.survey.posttractor.external_standins import STANDIN_DTYPES, write_standins
from lsdr.survey.simulate.truth import TRUTH_DTYPE

BRICKS = ("1801p320", "1804p320")
"""Two neighbouring bricks (centres 180.125 and 180.375, Dec 32.0)."""
ARCSEC = 1.0 / 3600.0


def tractor_rows(brick: str, ra: list[float], dec: list[float], primary: list[bool]) -> np.ndarray:
    """A small tractor-like catalogue (lower-case columns, as runbrick writes them)."""
    n = len(ra)
    rows = np.zeros(
        n,
        [
            ("release", ">i2"),
            ("brickid", ">i4"),
            ("brickname", "S8"),
            ("objid", ">i4"),
            ("brick_primary", "?"),
            ("type", "S3"),
            ("ra", ">f8"),
            ("dec", ">f8"),
            ("flux_g", ">f4"),
        ],
    )
    rows["release"] = 10000
    rows["brickid"] = BRICKS.index(brick) + 1
    rows["brickname"] = brick
    rows["objid"] = np.arange(n)
    rows["brick_primary"] = primary
    rows["type"] = b"PSF"
    rows["ra"] = ra
    rows["dec"] = dec
    rows["flux_g"] = np.arange(n) + 100 * (BRICKS.index(brick) + 1)
    return rows


def write_tractor(layout: ReleaseLayout, brick: str, rows: np.ndarray) -> None:
    """Write a tractor catalogue as runbrick does (HDU 1, with units)."""
    path = layout.tractor(brick)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(rows.dtype.names or ())
    units = ["deg" if n == "ra" else "" for n in names]
    fitsio.write(str(path), rows, clobber=True, units=units)


def write_external(path: Path, ra: list[float], dec: list[float], **cols: Any) -> Path:
    """An external catalogue with RA, DEC and the given columns."""
    dtype = [("RA", ">f8"), ("DEC", ">f8")] + [
        (
            k,
            np.asarray(v).dtype.newbyteorder(">")
            if np.asarray(v).dtype.kind in "if"
            else np.asarray(v).dtype,
        )
        for k, v in cols.items()
    ]
    table = np.zeros(len(ra), dtype)
    table["RA"], table["DEC"] = ra, dec
    for k, v in cols.items():
        table[k] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    fitsio.write(str(path), table, clobber=True)
    return path


@pytest.fixture
def release(tmp_path: Path) -> ReleaseLayout:
    """Two bricks: brick 0 has a primary and a non-primary object; brick 1 has two primaries."""
    layout = ReleaseLayout(tmp_path / "rel")
    write_tractor(
        layout,
        BRICKS[0],
        tractor_rows(BRICKS[0], [180.20, 180.2 + 0.3 * ARCSEC], [32.0, 32.0], [True, False]),
    )
    write_tractor(
        layout,
        BRICKS[1],
        tractor_rows(BRICKS[1], [180.30, 180.30 + 1.2 * ARCSEC], [32.0, 32.0], [True, True]),
    )
    return layout


def test_rows_follow_the_external_order_with_nearest_primary_and_copycols(
    release: ReleaseLayout,
) -> None:
    """Each external row gets its nearest primary within 1.5″ (else OBJID −1) and its copycols."""
    ext = write_external(
        release.root / "ext.fits",
        # far; on brick-0 primary; on brick-0 non-primary (0.3″ from the primary: matches it);
        # between brick-1's two primaries, nearer the second; 2″ from everything
        [181.0, 180.2, 180.2 + 0.3 * ARCSEC, 180.30 + 0.8 * ARCSEC, 180.2 - 2.0 * ARCSEC],
        [32.0, 32.0 + 0.1 * ARCSEC, 32.0, 32.0, 32.0],
        MJD=[5, 6, 7, 8, 9],
        PLATE=[50, 60, 70, 80, 90],
    )
    cat = ExternalCatalogue("test", ext, ("MJD", "PLATE"))
    result = match_external(release, cat, list(BRICKS))
    table = read_matched(result.path)
    assert result.path == release.external_match("test")
    assert list(table.dtype.names or ())[:-2] == [
        "RELEASE",
        "BRICKID",
        "BRICKNAME",
        "OBJID",
        "BRICK_PRIMARY",
        "TYPE",
        "RA",
        "DEC",
        "FLUX_G",
    ]
    assert list(table["MJD"]) == [5, 6, 7, 8, 9]
    assert list(table["PLATE"]) == [50, 60, 70, 80, 90]
    assert list(table["OBJID"]) == [-1, 0, 0, 1, -1]
    assert list(table["BRICKNAME"][[1, 2, 3]]) == ["1801p320", "1801p320", "1804p320"]
    assert list(table["FLUX_G"][[1, 3]]) == [100.0, 201.0]
    assert result.n_external == 5 and result.n_matched == 3 and result.n_bricks == 2
    hdr = fitsio.read_header(str(result.path), ext="MATCHED")
    assert hdr["NMATCHED"] == 3 and hdr["RADIUS"] == 1.5
    assert hdr["TUNIT7"].strip() == "deg"


def test_a_smaller_radius_drops_matches_and_a_missing_brick_is_counted(
    release: ReleaseLayout,
) -> None:
    """At 0.5″ the 0.8″ neighbour is lost; a brick with no catalogue is skipped and counted."""
    ext = write_external(release.root / "ext.fits", [180.30], [32.0 + 0.8 * ARCSEC])
    assert match_external(release, ExternalCatalogue("r", ext), BRICKS).n_matched == 1
    result = match_external(
        release, ExternalCatalogue("r", ext), [*BRICKS, "1807p320"], radius_arcsec=0.5
    )
    assert result.n_matched == 0 and result.n_bricks_missing == 1
    assert read_matched(result.path)["OBJID"][0] == -1


def test_matches_equal_a_brute_force_nearest_neighbour(tmp_path: Path) -> None:
    """On random catalogues every row is the nearest primary object found by brute force."""
    rng = np.random.default_rng(3)
    layout = ReleaseLayout(tmp_path / "rel")
    objects = []
    for brick, ra0 in zip(BRICKS, (180.0, 180.25), strict=True):
        ra = rng.uniform(ra0, ra0 + 0.25, 400)
        dec = rng.uniform(31.875, 32.125, 400)
        primary = rng.uniform(size=400) < 0.8
        rows = tractor_rows(brick, list(ra), list(dec), list(primary))
        write_tractor(layout, brick, rows)
        objects.append(rows[primary])
    allobj = np.concatenate(objects)
    base = rng.integers(0, len(allobj), 300)
    ext_ra = allobj["ra"][base] + rng.normal(0, 1.0, 300) * ARCSEC
    ext_dec = allobj["dec"][base] + rng.normal(0, 1.0, 300) * ARCSEC
    ext = write_external(tmp_path / "ext.fits", list(ext_ra), list(ext_dec), ID=np.arange(300))
    table = read_matched(match_external(layout, ExternalCatalogue("bf", ext, ("ID",)), BRICKS).path)

    ra1, dec1 = np.radians(ext_ra)[:, None], np.radians(ext_dec)[:, None]
    ra2, dec2 = np.radians(allobj["ra"])[None, :], np.radians(allobj["dec"])[None, :]
    hav = (
        np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    )
    sep = np.degrees(2 * np.arcsin(np.sqrt(hav))) * 3600
    nearest = np.argmin(sep, axis=1)
    within = sep[np.arange(300), nearest] < 1.5
    assert 0 < within.sum() < 300
    assert list(table["ID"]) == list(range(300))
    assert np.all(table["OBJID"][~within] == -1)
    want = allobj[nearest[within]]
    assert np.array_equal(table["OBJID"][within], want["objid"])
    assert list(table["BRICKNAME"][within]) == [b.decode() for b in want["brickname"]]


def test_bad_inputs_are_errors_naming_the_file(release: ReleaseLayout) -> None:
    """A missing copy column or file names the external file; a copycol clash is refused."""
    ext = write_external(release.root / "ext.fits", [180.2], [32.0], MJD=[1])
    with pytest.raises(InputFileError, match=r"ext\.fits.*NOPE"):
        match_external(release, ExternalCatalogue("x", ext, ("NOPE",)), BRICKS)
    with pytest.raises(InputFileError, match=r"missing\.fits"):
        match_external(release, ExternalCatalogue("x", release.root / "missing.fits"), BRICKS)
    clash = write_external(release.root / "clash.fits", [180.2], [32.0], TYPE=["QSO"])
    with pytest.raises(UsageError, match="TYPE"):
        match_external(release, ExternalCatalogue("x", clash, ("TYPE",)), BRICKS)
    with pytest.raises(InputFileError, match="no tractor catalogue"):
        match_external(release, ExternalCatalogue("x", ext), ["1807p320"])


def test_the_five_sdss_catalogues_and_their_stand_in_columns() -> None:
    """The cookbook's five, each stand-in holding its position and copy columns."""
    names = [c.name for c in SDSS_CATALOGUES]
    assert names == ["dr12Q", "dr7Q", "superset-dr12Q", "specObj-dr14", "dr14Q_v4_4"]
    assert set(STANDIN_DTYPES) == set(names)
    for cat in SDSS_CATALOGUES:
        cols = STANDIN_DTYPES[cat.name].names or ()
        assert {cat.ra_column, cat.dec_column, *cat.copycols} <= set(cols), cat.name
    paths = default_catalogues(Path("/rel"))
    assert paths[1].path == Path("/rel/external-input/dr7/dr7qso.fit.gz")


def test_catalogue_list_from_yaml(tmp_path: Path) -> None:
    """A release's YAML list replaces the default; paths are relative to it; typos fail."""
    assert release_catalogues(tmp_path)[0].name == "dr12Q"
    (tmp_path / "external-catalogues.yaml").write_text(
        "catalogues:\n"
        "  - name: dr16Q\n    path: sdss/DR16Q_v4.fits\n    copycols: [MJD, PLATE, FIBERID]\n"
    )
    (cat,) = release_catalogues(tmp_path)
    assert cat == ExternalCatalogue(
        "dr16Q", tmp_path / "sdss/DR16Q_v4.fits", ("MJD", "PLATE", "FIBERID")
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("- name: x\n  path: a.fits\n  copycol: [MJD]\n")
    with pytest.raises(InputFileError, match=r"bad\.yaml.*copycol"):
        catalogues_from_yaml(bad)
    bad.write_text("- {name: x, path: a.fits}\n- {name: x, path: b.fits}\n")
    with pytest.raises(InputFileError, match="repeat"):
        catalogues_from_yaml(bad)


def test_stand_ins_sit_on_bright_truth_objects_and_on_empty_sky(tmp_path: Path) -> None:
    """Each stand-in has rows within 1″ of bright truth objects and rows ≥ 10″ from any."""
    layout = ReleaseLayout(tmp_path / "rel")
    rng = np.random.default_rng(1)
    truth = np.zeros(400, TRUTH_DTYPE)
    truth["ra"] = rng.uniform(180.0, 180.5, 400)
    truth["dec"] = rng.uniform(31.9, 32.1, 400)
    truth["mag_r"] = rng.uniform(17.0, 24.0, 400)
    layout.truth_dir.mkdir(parents=True)
    fitsio.write(str(layout.truth_catalog), truth)
    paths = write_standins(layout)
    assert [p.name for p in paths] == [
        "DR12Q.fits",
        "dr7qso.fit.gz",
        "Superset_DR12Q.fits",
        "specObj-dr14.fits",
        "DR14Q_v4_4.fits",
    ]
    bright = truth[truth["mag_r"] < 21.0]
    for cat in default_catalogues(layout.root):
        table = fitsio.read(str(cat.path), upper=True)
        assert table.dtype.names == STANDIN_DTYPES[cat.name].names
        ra, dec = table[cat.ra_column], table[cat.dec_column]
        dra = (ra[:, None] - truth["ra"][None, :]) * np.cos(np.radians(32.0))
        sep = np.hypot(dra, dec[:, None] - truth["dec"][None, :]).min(axis=1) * 3600
        near = sep < 1.0
        assert near.sum() >= 10 and (sep[~near] > 9.9).all() and (~near).sum() >= 4
        dra_b = (ra[:, None] - bright["ra"][None, :]) * np.cos(np.radians(32.0))
        sep_b = np.hypot(dra_b, dec[:, None] - bright["dec"][None, :]).min(axis=1) * 3600
        assert (sep_b[near] < 1.0).all()
    again = write_standins(layout)
    assert [fitsio.read(str(p)).tobytes() for p in again] == [
        fitsio.read(str(p)).tobytes() for p in paths
    ]


# -- on a real lite-runbrick brick --------------------------------------------------------------
@pytest.mark.slow
def test_match_rows_equal_the_tractor_rows_they_came_from(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """On a simulated brick run by the lite runbrick, matched rows are the catalogue's rows."""
    from runbrick_survey import BRICK, prepared_survey, private_copy

    from lsdr.survey.runbrick.options import RunbrickOptions
    from lsdr.survey.runbrick.stages import run_brick

    layout = private_copy(prepared_survey(tmp_path_factory), tmp_path_factory.mktemp("ext") / "r")
    assert (
        run_brick(layout, BRICK, RunbrickOptions(width=300, height=300, pixscale=3.5)).status
        == "done"
    )
    write_standins(layout)
    tractor = fitsio.read(str(layout.tractor(BRICK)), upper=True)
    total_matched = 0
    for cat in default_catalogues(layout.root):
        result = match_external(layout, cat, [BRICK])
        table = read_matched(result.path)
        external = fitsio.read(str(cat.path), upper=True)
        assert len(table) == len(external)
        for col in cat.copycols:
            assert np.array_equal(table[col], external[col]), (cat.name, col)
        hit = table["OBJID"] != -1
        assert (~hit).sum() > 0
        for row in table[hit]:
            (src,) = tractor[tractor["OBJID"] == row["OBJID"]]
            assert src["BRICK_PRIMARY"]
            for name in tractor.dtype.names:
                assert np.array_equal(row[name], src[name]), (cat.name, name)
        total_matched += int(hit.sum())
    assert total_matched > 0
