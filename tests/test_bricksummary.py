"""Brick summary: chunks, per-brick values recomputed independently, merge columns, plots."""

from __future__ import annotations

from pathlib import Path

import fitsio
import numpy as np
import pytest
from astropy.wcs import WCS
from postprocess_fakes import write_fake_brick

from lsdr.survey.core.bricks import brick_by_name
from lsdr.survey.core.errors import InputFileError, UsageError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.posttractor.bricksummary import (
    merge_brick_summary,
    merged_dtype,
    summarize_chunk,
    summary_chunks,
)

BRICKS = ["1801p325", "1804p325", "1807p327"]
BANDS = ("g", "r", "z")


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> ReleaseLayout:
    """Three fake bricks of RA degree 180 (1807p327 without a z nexp map) and one of 181."""
    layout = ReleaseLayout(tmp_path_factory.mktemp("summary"))
    rng = np.random.default_rng(6)
    for brick in BRICKS:
        nexp_bands = ("g", "r") if brick == "1807p327" else BANDS
        write_fake_brick(layout, brick, rng, n=300, nexp_bands=nexp_bands, size=300)
    write_fake_brick(layout, "1813p325", rng, n=50, size=120)
    return layout


def test_bricks_are_chunked_by_ra_degree():
    """Chunk keys are the bricks' <bri> (RA degree); names are validated."""
    chunks = summary_chunks(["1813p325", "1801p325", "1804p325", "1801p325"])
    assert chunks == {"180": ["1801p325", "1804p325"], "181": ["1813p325"]}
    with pytest.raises(UsageError):
        summary_chunks(["../etc"])


def _expected(layout: ReleaseLayout, brick: str) -> dict[str, object]:
    """The summary values of a brick, recomputed from its files without lsdr's helpers."""
    b = brick_by_name(brick)
    cat = fitsio.read(str(layout.tractor(brick)), ext="CATALOG")
    hdr = fitsio.read_header(str(layout.tractor(brick)), ext=0)
    prim = cat[cat["brick_primary"]]
    types = np.char.strip(prim["type"].astype("U3"))
    out: dict[str, object] = {
        "nobjs": len(prim),
        "npsf": int(np.sum(types == "PSF")),
        "nrex": int(np.sum(types == "REX")),
        "ndup": int(np.sum(types == "DUP")),
        "ebv": np.median(prim["ebv"]),
    }
    for band in BANDS:
        ivar = np.median(prim[f"psfdepth_{band}"])
        out[f"psfdepth_{band}"] = 22.5 - 2.5 * np.log10(5.0 / np.sqrt(ivar))
        out[f"psfsize_{band}"] = np.median(prim[f"psfsize_{band}"])
        out[f"cosky_{band}"] = hdr[f"COSKY_{band.upper()}"]
        path = layout.coadd(brick, "nexp", band)
        if not path.exists():
            out[f"nexp_{band}"] = 0
            out[f"nexphist_{band}"] = np.zeros(11, int)
            continue
        image, ihdr = fitsio.read(str(path), header=True)
        ys, xs = np.mgrid[: image.shape[0], : image.shape[1]]
        ra, dec = WCS(ihdr).all_pix2world(xs, ys, 0)
        unique = (ra >= b.ra1) & (ra < b.ra2) & (dec >= b.dec1) & (dec < b.dec2)
        upix = image[unique]
        out[f"nexp_{band}"] = int(np.median(upix))
        out[f"nexphist_{band}"] = np.array(
            [np.sum(upix == i) for i in range(10)] + [np.sum(upix >= 10)]
        )
    return out


def test_summary_matches_values_recomputed_from_the_files(release: ReleaseLayout):
    """nexp, nexphist, depths, counts and cosky equal an independent computation."""
    chunks = [summarize_chunk(release, k, v) for k, v in summary_chunks(BRICKS).items()]
    assert [(c.key, c.bricks) for c in chunks] == [("180", 3)]
    result = merge_brick_summary(release, [c.path for c in chunks])
    table = fitsio.read(result.path)
    assert result.bricks == len(table) == 3
    assert list(table["brickname"]) == sorted(BRICKS)
    for row in table:
        brick = row["brickname"]
        expected = _expected(release, brick)
        for key, value in expected.items():
            np.testing.assert_allclose(row[key], value, rtol=1e-5, err_msg=f"{brick} {key}")
        b = brick_by_name(brick)
        assert (row["brickid"], row["ra1"], row["dec2"]) == (b.brickid, b.ra1, b.dec2)
        area = (b.ra2 - b.ra1) * 0.25 * np.cos(np.deg2rad(b.dec))
        assert row["area"] == pytest.approx(area, rel=1e-9)
        assert row["survey_primary"] == (b.dec >= 32.375)  # b > 0 everywhere near RA 180, Dec 32
        assert not row["in_desi"]
    # The histogram covers every unique pixel: about a brick's area of the 300² grid.
    assert 0.85 * 300**2 < table["nexphist_g"][0].sum() < 0.95 * 300**2
    assert table.dtype.names == merged_dtype(BANDS).names


def test_missing_band_and_missing_catalogue(release: ReleaseLayout):
    """A band without nexp map: 0 and an empty histogram; a brick without catalogue: left out."""
    chunk = summarize_chunk(release, "180", [*BRICKS, "1801p327"])
    assert (chunk.bricks, chunk.missing) == (3, 1)
    table = fitsio.read(chunk.path)
    row = table[table["brickname"] == "1807p327"][0]
    assert row["nexp_z"] == 0 and row["nexphist_z"].sum() == 0
    assert row["nexp_g"] > 0 and row["psfdepth_z"] > 20  # the catalogue still has z depths


def test_chunk_refuses_foreign_bricks_and_merge_refuses_duplicates(release: ReleaseLayout):
    """A brick of another RA degree is a usage error; a brick in two chunks an input error."""
    with pytest.raises(UsageError):
        summarize_chunk(release, "180", ["1813p325"])
    a = summarize_chunk(release, "180", BRICKS)
    dup = release.root / "dup.fits"
    dup.write_bytes(Path(a.path).read_bytes())
    with pytest.raises(InputFileError, match="more than one"):
        merge_brick_summary(release, [a.path, str(dup)], plot=False)


def test_merge_by_key_writes_readable_plots(release: ReleaseLayout):
    """Chunks can be named by key; each sky map is a PNG in plots/."""
    summarize_chunk(release, "181", ["1813p325"])
    summarize_chunk(release, "180", BRICKS)
    result = merge_brick_summary(release, ["180", "181"])
    assert result.bricks == 4
    names = sorted(Path(p).name for p in result.plots)
    assert names == [f"brick-summary-{s}.png" for s in ("galdepth", "nexp", "psfdepth")]
    for p in result.plots:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert Path(p).parent == release.plots_dir
