"""A deployment's options laid over the ones the release last ran with (``tasks/recorded.py``).

The record is written the way ``lsdr run release`` writes it (the ledger's ``chain_options``)
or the way a tractor unit leaves it (its sidecar); the expectations are the documented rule
(``docs/deployments.md``): the fields a run names win, every other field is the record's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lsdr.flows.settings import ledger_for
from lsdr.infra.settings import load_settings
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import (
    BricksOptions,
    DepthOptions,
    KdtreeOptions,
    ReleaseOptions,
    TractorOptions,
)
from lsdr.tasks.recorded import deployed_options, over_record, recorded_phase
from lsdr.tasks.sidecars import write_sidecar
from lsdr.tasks.unit import UnitResult

DEMO = {"tractor": {"width": 1800, "height": 1800, "pixscale": 0.524}, "depth": {"bands": ["g"]}}
"""The demo's grid (``lsdr demo``: binned bricks) and a depth phase made on one band."""


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """A release directory with a two-brick list and nothing run."""
    root = tmp_path / "release"
    (root / "images").mkdir(parents=True)
    (root / "bricks.txt").write_text("1801p325\n1804p325\n")
    return root


def test_only_the_fields_a_run_names_replace_the_record() -> None:
    """``{"bricks": [...]}`` keeps the recorded grid; a named width replaces it alone."""
    recorded = TractorOptions(width=1800, height=1800, pixscale=0.524)
    assert over_record(None, recorded) == recorded
    one = over_record(TractorOptions.model_validate({"bricks": ["1801p325"]}), recorded)
    assert (one.bricks, one.width, one.height, one.pixscale) == (["1801p325"], 1800, 1800, 0.524)
    wider = over_record(TractorOptions.model_validate({"width": 3600}), recorded)
    assert (wider.width, wider.height) == (3600, 1800)


def test_a_chain_s_options_are_laid_over_its_record_model_by_model() -> None:
    """A release run naming one tractor field keeps the rest of the recorded tractor options."""
    recorded = ReleaseOptions.model_validate(DEMO)
    given = ReleaseOptions.model_validate({"tractor": {"bricks": ["1804p325"]}})
    merged = over_record(given, recorded)
    assert merged.tractor.width == 1800 and merged.tractor.bricks == ["1804p325"]
    assert merged.depth.bands == ["g"]


def test_each_phase_finds_its_options_in_the_release_record() -> None:
    """Pre-tractor phases in ``pretractor``, the others at the top; kdtree has none."""
    recorded = ReleaseOptions.model_validate(
        {**DEMO, "pretractor": {"bricks": {"region": [180, 181, 32, 33]}}}
    )
    assert recorded_phase(recorded, "tractor") == recorded.tractor
    assert recorded_phase(recorded, "depth") == DepthOptions(bands=["g"])
    assert recorded_phase(recorded, "bricks") == BricksOptions(region=(180, 181, 32, 33))
    assert recorded_phase(recorded, "pretractor") == recorded.pretractor
    assert recorded_phase(recorded, "kdtree") is None


def test_a_deployed_run_takes_the_ledger_s_record_and_never_its_destination(
    release: Path,
) -> None:
    """The last release run's options, as the ledger records them; publishing is not repeated."""
    settings = load_settings(release)
    ran = ReleaseOptions.model_validate({**DEMO, "destination": "/published/dr10"})
    ledger_for(settings).record_chain_options("release", ran.model_dump_json())
    layout = ReleaseLayout(release)
    tractor = deployed_options("tractor", layout, settings, None)
    assert tractor == ran.tractor
    given = TractorOptions.model_validate({"bricks": ["1801p325"]})
    assert deployed_options("tractor", layout, settings, given) == ran.tractor.model_copy(
        update={"bricks": ["1801p325"]}
    )
    whole = deployed_options("release", layout, settings, None)
    assert isinstance(whole, ReleaseOptions) and whole.destination is None
    assert whole.tractor == ran.tractor
    kd = KdtreeOptions()
    assert deployed_options("kdtree", layout, settings, kd) is kd


def test_without_a_ledger_record_the_bricks_sidecars_give_the_grid(release: Path) -> None:
    """A release whose phases ran one by one: the grid its tractor units recorded."""
    layout = ReleaseLayout(release)
    grid = (("width", 1800), ("height", 1800), ("pixscale", 0.524), ("outliers", True))
    for brick in ("1801p325", "1804p325"):
        write_sidecar(layout, UnitResult("tractor", brick, "done"), options=grid)
    chosen = deployed_options("tractor", layout, load_settings(release), None)
    assert isinstance(chosen, TractorOptions)
    assert (chosen.width, chosen.height, chosen.pixscale) == (1800, 1800, 0.524)
