"""Image discovery: superseded processings, missing companions, bad headers, date trimming."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import fitsio
import pytest

from lsdr.survey.core import bricks as grid
from lsdr.survey.core.cameras import get_camera
from lsdr.survey.core.errors import InputFileError, UsageError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.pretractor.discover import (
    discover_images,
    exposure_number,
    night_of_mjd,
    read_image_list,
    version_key,
    write_image_list,
)
from lsdr.survey.simulate.config import PassSpec, SimulationConfig
from lsdr.survey.simulate.simulator import simulate_survey

REGION = grid.RaDecBox(180.40, 180.50, 32.45, 32.55)


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory) -> ReleaseLayout:
    """Two Mosaic z and one 90Prime r pointing, two exposures also written as older processings."""
    root = tmp_path_factory.mktemp("discover")
    passes = (PassSpec("mosaic", "z", 2), PassSpec("90prime", "r", 1))
    simulate_survey(root, SimulationConfig(region=REGION, passes=passes, workers=2, reprocessed=2))
    return ReleaseLayout(root)


def copy_of(survey: ReleaseLayout, tmp_path: Path) -> ReleaseLayout:
    """A writable copy of the survey's images and truth."""
    for sub in ("images", "truth"):
        shutil.copytree(survey.root / sub, tmp_path / sub)
    return ReleaseLayout(tmp_path)


def test_discovery_drops_exactly_the_superseded_copies(survey: ReleaseLayout):
    """Kept = the truth's non-superseded images; dropped = its superseded ones, naming the kept."""
    truth = fitsio.read(str(survey.truth_ccds))
    newest = {
        str(f) for f, s in zip(truth["image_filename"], truth["superseded"], strict=True) if not s
    }
    older = {str(f) for f, s in zip(truth["image_filename"], truth["superseded"], strict=True) if s}
    assert len(older) == 2
    found = discover_images(survey)
    assert {i.relpath for i in found.images} == newest
    assert [i.relpath for i in found.images] == sorted(newest)
    assert {rel for rel, _ in found.dropped} == older
    kept_by_expnum = {(i.camera, i.expnum): i.relpath for i in found.images}
    for rel, reason in found.dropped:
        expnum = int(truth["expnum"][truth["image_filename"] == rel][0])
        assert reason.startswith(f"duplicate of {kept_by_expnum[('mosaic', expnum)]}")
        assert "older PLVER" in reason


def test_header_facts(survey: ReleaseLayout):
    """Exposure numbers, bands, MJD and PLVER come from the headers as legacypipe reads them."""
    truth = fitsio.read(str(survey.truth_ccds))
    for image in discover_images(survey).images:
        row = truth[truth["image_filename"] == image.relpath][0]
        assert image.expnum == int(row["expnum"])
        assert image.band == str(row["filter"])
        assert image.camera == str(row["camera"]).strip()
        assert image.mjd_obs == pytest.approx(float(row["mjd_obs"]), abs=1e-6)
        assert image.plver == str(row["plver"]) and len(image.plprocid) == 7
    ninety = [i for i in discover_images(survey).images if i.camera == "90prime"]
    assert ninety and all(i.band == "r" for i in ninety)  # FILTER 'bokr'


def test_missing_companion_and_unreadable_header(survey: ReleaseLayout, tmp_path: Path):
    """An image without its ood is dropped, and one with a broken header, each with the reason."""
    layout = copy_of(survey, tmp_path)
    kept = discover_images(layout).images
    no_ood, broken = kept[0].relpath, kept[1].relpath
    layout.image_companion(no_ood, "ood").unlink()
    layout.image(broken).write_bytes(b"this is not FITS" * 300)
    found = discover_images(layout)
    reasons = dict(found.dropped)
    assert "missing ood companion" in reasons[no_ood]
    assert (
        "unreadable primary header" in reasons[broken] and broken.split("/")[-1] in reasons[broken]
    )
    assert {no_ood, broken}.isdisjoint(i.relpath for i in found.images)


def test_date_trimming_and_cameras(survey: ReleaseLayout):
    """Nights outside [date_min, date_max] are dropped (inclusive); cameras restricts the search."""
    found = discover_images(survey)
    nights = {i.relpath: night_of_mjd(i.mjd_obs, i.camera) for i in found.images}
    # The simulator's CP night directories agree with the MJD rule.
    for rel, night in nights.items():
        assert f"CP{night:%Y%m%d}" in rel
    first = min(nights.values())
    only = discover_images(survey, date_min=first, date_max=first)
    assert {i.relpath for i in only.images} == {r for r, n in nights.items() if n == first}
    assert any(reason.startswith("outside dates") for _, reason in only.dropped)
    mosaic = discover_images(survey, cameras=["mosaic"])
    assert {i.camera for i in mosaic.images} == {"mosaic"}
    with pytest.raises(UsageError):
        discover_images(survey, date_min=dt.date(2020, 1, 2), date_max=dt.date(2020, 1, 1))


def test_image_list_roundtrip(survey: ReleaseLayout, tmp_path: Path):
    """The image list holds one relative path a line and reads back the same; bad lines fail."""
    layout = ReleaseLayout(tmp_path)
    found = discover_images(survey)
    path = write_image_list(layout, found)
    assert path == layout.image_list
    assert path.read_text().splitlines() == [i.relpath for i in found.images]
    assert read_image_list(layout) == [i.relpath for i in found.images]
    path.write_text("../etc/passwd\n")
    with pytest.raises(InputFileError, match="line 1"):
        read_image_list(layout)


def test_exposure_numbers_and_versions():
    """90Prime DTACQNAM digits, Mosaic's OBSID fallback, and version ordering."""
    bok = {"DTACQNAM": "/descache/bass/20160710/d7580.0144.fits"}
    assert exposure_number(bok, get_camera("90prime")) == 75800144
    mosaic = {"EXPNUM": None, "OBSID": "kp4m.20160125T082555"}
    assert exposure_number(mosaic, get_camera("mosaic")) == 160125082555
    assert exposure_number({"EXPNUM": "431608"}, get_camera("decam")) == 431608
    assert version_key("V4.10") > version_key("V4.9") > version_key("V4.8.2a") > version_key("V4.8")
    assert version_key("v2") > version_key("v1")
