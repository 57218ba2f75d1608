"""The release's depth histogram against values recomputed from real coadd files."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import fitsio
import numpy as np
import pytest
from border_release import EAST, WEST

from lsdr.survey.core import bricks as grid
from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.posttractor.depthhist import brick_depth_counts, merge_depth_histogram

BRICKS = (WEST, EAST)
BANDS = ("g", "r", "z")
EDGES = np.concatenate([[0.0], np.round(np.arange(121) * 0.05 + 20.0, 6), [100.0]])
"""0, 20, 20.05, …, 26, 100: the documented bins."""


@pytest.fixture
def layout(border_release: ReleaseLayout, tmp_path: Path) -> ReleaseLayout:
    """A release holding copies of the two bricks' depth, galdepth and maskbits maps."""
    out = ReleaseLayout(tmp_path / "rel")
    for brick in BRICKS:
        out.coadd_dir(brick).mkdir(parents=True)
        paths = [border_release.coadd_maskbits(brick)]
        paths += [border_release.coadd(brick, k, b) for k in ("depth", "galdepth") for b in BANDS]
        for path in paths:
            assert path.exists(), path
            shutil.copy(path, out.coadd_dir(brick) / path.name)
    return out


def _expected(layout: ReleaseLayout) -> dict[str, np.ndarray]:
    """Per column, area (deg²) per bin over the bricks' primary pixels, straight from the files."""
    out: dict[str, np.ndarray] = {}
    for brick in BRICKS:
        mask, hdr = fitsio.read(str(layout.coadd_maskbits(brick)), ext=1, header=True)
        primary = (mask & 1) == 0
        pixarea = abs(hdr["CD1_1"] * hdr["CD2_2"] - hdr["CD1_2"] * hdr["CD2_1"])
        for word, kind in (("ptsrc", "depth"), ("gal", "galdepth")):
            for band in BANDS:
                path = layout.coadd(brick, kind, band)
                if not path.exists():
                    continue
                ivar = fitsio.read(str(path), ext=1)[primary]
                ivar = ivar[ivar > 0].astype(np.float64)
                mag = 22.5 - 2.5 * np.log10(5.0 / np.sqrt(ivar))
                counts = np.histogram(mag, bins=EDGES)[0]
                key = f"{word}_{band}"
                out[key] = out.get(key, 0) + counts * pixarea
                out[f"mags_{key}"] = np.concatenate([out.get(f"mags_{key}", []), mag])
    return out


def test_histogram_matches_the_coadd_maps(layout: ReleaseLayout) -> None:
    """Areas per bin, total area and medians equal those recomputed from the maps."""
    for brick in BRICKS:
        counts = brick_depth_counts(layout, brick)
        assert Path(counts.path) == layout.depth_counts(brick)
    result = merge_depth_histogram(layout, list(BRICKS))
    table, hdr = fitsio.read(result.path, ext="DEPTH", header=True)
    assert np.allclose(table["depthlo"], EDGES[:-1]) and np.allclose(table["depthhi"], EDGES[1:])
    expected = _expected(layout)
    for band in BANDS:
        for word in ("ptsrc", "gal"):
            key = f"{word}_{band}"
            assert np.allclose(table[f"area_{key}"], expected[key], rtol=1e-9, atol=0)
            mags = expected[f"mags_{key}"]
            assert table[f"counts_{key}"].sum() == len(mags)
        assert abs(result.median_psfdepth[band] - np.median(expected[f"mags_ptsrc_{band}"])) < 0.05
        assert abs(result.median_galdepth[band] - np.median(expected[f"mags_gal_{band}"])) < 0.05
        assert hdr[f"MEDPSF_{band.upper()}"] == pytest.approx(result.median_psfdepth[band])
    # Primary pixels tile the sky: the area is the bricks' own, overlaps counted once.
    sky = 0.0
    for brick in BRICKS:
        b = grid.brick_by_name(brick)
        sky += math.radians(b.ra2 - b.ra1) * (
            math.sin(math.radians(b.dec2)) - math.sin(math.radians(b.dec1))
        )
    assert result.area_deg2 == pytest.approx(sky * (180 / math.pi) ** 2, rel=0.01)
    assert result.nbricks == len(BRICKS) == hdr["NBRICKS"]
    assert Path(result.plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_merge_is_additive_and_idempotent(layout: ReleaseLayout) -> None:
    """Merging bricks one set at a time sums; rerunning a brick's counts gives the same file."""
    for brick in BRICKS:
        brick_depth_counts(layout, brick)
    first = Path(layout.depth_counts(BRICKS[0])).read_bytes()
    brick_depth_counts(layout, BRICKS[0])
    assert Path(layout.depth_counts(BRICKS[0])).read_bytes() == first
    parts = [fitsio.read(merge_depth_histogram(layout, [b]).path, ext="DEPTH") for b in BRICKS]
    whole = fitsio.read(merge_depth_histogram(layout, list(BRICKS)).path, ext="DEPTH")
    for name in whole.dtype.names:
        if name.startswith(("counts_", "area_")):
            assert np.allclose(whole[name], sum(p[name] for p in parts))


def test_missing_or_truncated_maps_name_the_file(layout: ReleaseLayout) -> None:
    """A truncated depth map, a missing galdepth map or missing counts name the file."""
    depth = layout.coadd(BRICKS[0], "depth", "r")
    depth.write_bytes(depth.read_bytes()[:4000])
    with pytest.raises(InputFileError, match=depth.name):
        brick_depth_counts(layout, BRICKS[0])
    galdepth = layout.coadd(BRICKS[1], "galdepth", "g")
    galdepth.unlink()
    with pytest.raises(InputFileError, match=galdepth.name):
        brick_depth_counts(layout, BRICKS[1])
    with pytest.raises(InputFileError, match=f"depth-{BRICKS[1]}"):
        merge_depth_histogram(layout, [BRICKS[1]])  # its counts were never written
