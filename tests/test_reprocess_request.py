"""A reprocess-region request: every refusal is one line naming what is wrong, before anything runs.

The model (``survey/core/reprocess_request.py``) is what a deployment's parameters, the CLI's
flags and the flow all go through; :func:`region_bricks` checks a request against the release's
brick list.  ``lsdr reprocess`` refuses a bad request with one line and exit status 2 without
writing anything (no ``state/``: no server, no log, no ledger).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from lsdr.flows.phases import PHASE_FLOWS
from lsdr.flows.release import POST_TRACTOR
from lsdr.survey.core.bricks import RaDecBox, bricks_in_region
from lsdr.survey.core.errors import UsageError
from lsdr.survey.core.reprocess_request import (
    PER_BRICK_PHASES,
    REPROCESS_PHASES,
    ReprocessRequest,
    region_bricks,
    request_error_line,
)

COOKBOOK = [b.brickname for b in bricks_in_region(RaDecBox(180.0, 181.0, 32.0, 33.0))]
"""The demo release's 15 bricks."""


def refusal(document: dict[str, Any]) -> str:
    """The one line a refused request document gives."""
    with pytest.raises(ValidationError) as caught:
        ReprocessRequest.model_validate(document)
    line = request_error_line(caught.value)
    assert "\n" not in line
    return line


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"box": "400,10,0,1"}, "box: ra_min 400 is outside [0, 360]"),
        ({"box": [10, 400, 0, 1]}, "box: ra_max 400 is outside [0, 360]"),
        ({"box": "10,20,33,32"}, "box: empty region: dec_min 33 is not below dec_max 32"),
        ({"box": "10,20,0,95"}, "box: dec_max 95 is outside [-90, 90]"),
        ({"box": "10,20,1"}, "box: region '10,20,1': expected 'ra_min,ra_max,dec_min,dec_max'"),
        ({"bricks": ["9999p999"]}, "bricks: '9999p999' is not a brick of the Legacy Surveys grid"),
        ({"bricks": ["1804p325", "18o4p325"]}, "bricks: '18o4p325' is not a brick name"),
        ({"bricks": ["../1804p325"]}, "bricks: '../1804p325' is not a brick name"),
        ({"bricks": ["a/b"]}, "bricks: 'a/b' is not a brick name"),
        ({"bricks": []}, "bricks: the list is empty"),
        ({"bricks": ["1804p325"], "phases": ["tractr"]}, "phases: unknown phase 'tractr'"),
        (
            {"bricks": ["1804p325"], "phases": ["zeropoints"]},
            "phases: phase 'zeropoints' cannot be run for a region",
        ),
        ({"bricks": ["1804p325"], "phases": ["publish"]}, "phase 'publish' cannot be run"),
        ({"bricks": ["1804p325"], "phases": []}, "phases: the list is empty"),
        (
            {"box": "180.01,180.02,32.01,32.02"},
            "empty region: no brick of the grid has its centre in box 180.01,180.02,32.01,32.02",
        ),
        ({"region": "cookbok"}, "region: unknown region 'cookbok': known regions are cookbook"),
        ({}, "give exactly one of box, bricks or region (got none)"),
        (
            {"box": "180,181,32,33", "bricks": ["1804p325"]},
            "give exactly one of box, bricks or region (got box, bricks)",
        ),
        ({"bricks": ["1804p325"], "engine": "lsdr.tests:Evil"}, "engine: unknown engine"),
        ({"bricks": ["1804p325"], "profile": "slurm"}, "profile: unknown cluster profile 'slurm'"),
        ({"bricks": ["1804p325"], "forse": True}, "unknown parameter 'forse'"),
        ({"bricks": ["1804p325"], "priority": "high"}, "priority: Input should be a valid integer"),
    ],
)
def test_a_refused_request_is_one_line_naming_what_is_wrong(
    document: dict[str, Any], expected: str
) -> None:
    """Each invalid request gives the domain's one line: the field, the value, the reason."""
    assert expected in refusal(document)


def test_a_request_names_the_phases_in_chain_order_each_once() -> None:
    """The phases run in chain order whatever the order given; the default is all of them."""
    request = ReprocessRequest(bricks=["1804p325"], phases=["sweeps", "tractor", "sweeps"])
    assert request.phases == ["tractor", "sweeps"]
    assert ReprocessRequest(region="cookbook").phases == list(REPROCESS_PHASES)


def test_the_phases_are_tractor_and_the_post_tractor_phases_of_the_registry() -> None:
    """A request runs runbrick and the release chain's post-tractor phases, nothing else."""
    assert ("tractor", *POST_TRACTOR) == REPROCESS_PHASES
    assert set(REPROCESS_PHASES) <= set(PHASE_FLOWS)
    assert set(PER_BRICK_PHASES) <= set(REPROCESS_PHASES)


def test_a_box_across_ra_zero_is_accepted_as_region_box_reads_it() -> None:
    """ra_min > ra_max is a box across RA 0/360 (queue_calibs' convention), not an error."""
    request = ReprocessRequest(box="359.5,0.5,-0.2,0.2")
    box = request.sky_box()
    assert box is not None and box.wraps
    assert "0001p000" in [b.brickname for b in bricks_in_region(box)]


def test_a_named_region_or_the_whole_sky_is_checked_without_listing_its_bricks() -> None:
    """``all`` (662,174 bricks) validates at once; it is refused by the maximum later."""
    assert ReprocessRequest(region="all").sky_box() == RaDecBox(0.0, 360.0, -90.0, 90.0)


def test_the_region_is_exactly_the_release_bricks_in_it() -> None:
    """A box keeps the release's bricks whose centre lies in it, in the brick list's order."""
    half = ReprocessRequest(box="180,180.5,32,32.5")
    assert region_bricks(half, COOKBOOK, 1000) == [
        "1801p320", "1804p320", "1801p322", "1804p322", "1801p325", "1804p325",
    ]  # fmt: skip
    assert region_bricks(ReprocessRequest(region="cookbook"), COOKBOOK, 1000) == COOKBOOK
    # A box larger than the release: only the release's bricks (the rest has no data).
    assert region_bricks(ReprocessRequest(box="179,182,31,34"), COOKBOOK, 1000) == COOKBOOK
    named = ReprocessRequest(bricks=["1807p325", "1804p325", "1807p325"])
    assert region_bricks(named, COOKBOOK, 1000) == ["1807p325", "1804p325"]


@pytest.mark.parametrize(
    ("document", "maximum", "expected"),
    [
        (
            {"bricks": ["1804p325", "0001p000"]},
            1000,
            "brick 0001p000 is not in the release's brick list (bricks.txt, 15 bricks)",
        ),
        (
            {"box": "10,11,0,1"},
            1000,
            "empty region: no brick of the release's brick list (bricks.txt, 15 bricks) has its "
            "centre in box 10,11,0,1",
        ),
        (
            {"region": "cookbook"},
            10,
            "region cookbook has 15 bricks of the release, more than reprocess_max_bricks (10): "
            "set allow_large (--allow-large) to run it",
        ),
    ],
)
def test_a_request_the_release_cannot_serve_is_refused(
    document: dict[str, Any], maximum: int, expected: str
) -> None:
    """Bricks outside the release, an empty region, too many bricks: one line each."""
    with pytest.raises(UsageError) as caught:
        region_bricks(ReprocessRequest.model_validate(document), COOKBOOK, maximum)
    assert str(caught.value) == expected


def test_allow_large_lets_a_region_past_the_maximum() -> None:
    """The maximum is a guard against a typo, not a limit: allow_large passes it."""
    request = ReprocessRequest(region="cookbook", allow_large=True)
    assert region_bricks(request, COOKBOOK, 10) == COOKBOOK


def test_the_maximum_is_a_setting_with_a_default_of_1000(tmp_path: Path) -> None:
    """``reprocess_max_bricks``: 1000 unless the release's file or the environment says."""
    from lsdr.infra.settings import load_settings

    assert load_settings(tmp_path).reprocess_max_bricks == 1000
    (tmp_path / "lsdr.yaml").write_text("reprocess_max_bricks: 20\n")
    assert load_settings(tmp_path).reprocess_max_bricks == 20


def test_the_flow_validates_a_deployment_s_parameters_by_the_model() -> None:
    """Prefect validates a run's ``request`` by the model: unknown or bad fields refused."""
    from lsdr.flows.reprocess import reprocess_region

    good = reprocess_region.validate_parameters(
        {"release_dir": "/r", "request": {"bricks": ["1804p325"], "force": True}}
    )
    assert good["request"] == ReprocessRequest(bricks=["1804p325"], force=True)
    for bad in ({"bricks": ["../x"]}, {"bricks": ["1804p325"], "priorty": 1}, {"box": "1,2,3"}):
        with pytest.raises(Exception, match=r"not a brick|Extra inputs|expected 'ra_min"):
            reprocess_region.validate_parameters({"release_dir": "/r", "request": bad})


def test_the_parameter_schema_forbids_unknown_fields() -> None:
    """What a deployment's form shows: the request's fields, defaults, no extra properties."""
    from prefect.utilities.callables import parameter_schema

    from lsdr.flows.reprocess import reprocess_region

    schema = parameter_schema(reprocess_region.fn).model_dump()
    request = schema["definitions"]["ReprocessRequest"]
    assert request["additionalProperties"] is False
    assert request["properties"]["force"]["default"] is False
    assert request["properties"]["phases"]["default"] == list(REPROCESS_PHASES)


# -- lsdr reprocess: refused before anything starts ----------------------------------------


@pytest.fixture
def small_release(tmp_path: Path) -> Path:
    """A release directory with a brick list (the demo's 15 bricks) and nothing run."""
    root = tmp_path / "release"
    (root / "images").mkdir(parents=True)
    (root / "bricks.txt").write_text("\n".join(COOKBOOK) + "\n")
    return root


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--region", "400,1,2,3"], "--region '400,1,2,3': ra_min 400 is outside [0, 360]"),
        (["--region", "10,20,33,32"], "dec_min 33 is not below dec_max 32"),
        (["--bricks", "1804p325,../1807p325"], "--bricks: '../1807p325' is not a brick name"),
        (["--bricks", "9999p999"], "'9999p999' is not a brick of the Legacy Surveys grid"),
        (["--bricks", "0001p000"], "brick 0001p000 is not in the release's brick list"),
        (["--region", "10,11,0,1"], "empty region: no brick of the release's brick list"),
        (["--bricks", "1804p325", "--phases", "merge"], "phase 'merge' cannot be run"),
        (["--bricks", "1804p325", "--engine", "nope"], "--engine: unknown engine 'nope'"),
        (["--bricks", "1804p325", "--frobnicate"], "no such option: --frobnicate"),
        ([], "give exactly one of box, bricks or region (got none)"),
        (["--region", "cookbook"], "more than reprocess_max_bricks (5)"),
    ],
)
def test_lsdr_reprocess_refuses_with_one_line_and_status_2_writing_nothing(
    small_release: Path, args: list[str], expected: str
) -> None:
    """Before the Prefect server, the cluster or the log file: nothing under state/."""
    env = {"LSDR_REPROCESS_MAX_BRICKS": "5", "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "lsdr", "reprocess", "--release-dir", str(small_release)]
    done = subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=120, check=False, env=env
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lsdr: error: "), done.stderr
    assert expected in lines[0]
    assert "Traceback" not in done.stderr
    assert not (small_release / "state").exists()


# -- the plan: tractor on the region, the rest over the whole release ------------------------


def made_with(root: Path, brick: str, width: int) -> None:
    """A done tractor sidecar for ``brick`` recording the grid it was made with."""
    from lsdr.survey.core.layout import ReleaseLayout
    from lsdr.tasks.sidecars import write_sidecar
    from lsdr.tasks.unit import UnitResult

    grid = (("width", width), ("height", width), ("pixscale", 0.524), ("outliers", True))
    write_sidecar(
        ReleaseLayout(root),
        UnitResult("tractor", brick, "done"),
        options=(*grid, ("bands", ["g", "r", "z"]), ("keep_checkpoints", False)),
    )


def test_the_plan_runs_tractor_on_the_region_with_the_release_grid(small_release: Path) -> None:
    """Tractor: the region's bricks, made as the release made them; the rest: every brick."""
    from lsdr.infra.settings import load_settings
    from lsdr.survey.core.layout import ReleaseLayout
    from lsdr.survey.core.phase_options import (
        BrightneighborsOptions,
        PackageOptions,
        SummaryOptions,
        SweepsOptions,
        TractorOptions,
    )
    from lsdr.tasks.reprocess import plan_reprocess

    made_with(small_release, "1804p325", 1800)
    settings = load_settings(small_release)
    request = ReprocessRequest(bricks=["1804p325", "1807p325"], force=True)
    plan = plan_reprocess(ReleaseLayout(small_release), request, settings)
    options = dict(plan.phases)
    assert plan.bricks == ["1804p325", "1807p325"]
    assert options["tractor"] == TractorOptions(
        bricks=plan.bricks, force=plan.bricks, width=1800, height=1800, pixscale=0.524
    )
    assert options["brightneighbors"] == BrightneighborsOptions(force=plan.bricks)
    assert options["package"] == PackageOptions(force=plan.bricks)
    assert options["summary"] == SummaryOptions()
    assert options["sweeps"] == SweepsOptions()
    unforced = plan_reprocess(
        ReleaseLayout(small_release), request.model_copy(update={"force": False}), settings
    )
    assert dict(unforced.phases)["tractor"].force == []  # type: ignore[attr-defined]

    made_with(small_release, "1807p325", 3600)
    with pytest.raises(UsageError, match="1804p325 and 1807p325 were made with other tractor"):
        plan_reprocess(ReleaseLayout(small_release), request, settings)


def test_the_plan_repeats_the_options_the_release_last_ran_with(small_release: Path) -> None:
    """The ledger's record of the last release run (grid, bands, sweep version) comes first."""
    from lsdr.flows.settings import ledger_for
    from lsdr.infra.settings import load_settings
    from lsdr.survey.core.layout import ReleaseLayout
    from lsdr.survey.core.phase_options import ReleaseOptions
    from lsdr.tasks.reprocess import plan_reprocess

    made_with(small_release, "1804p325", 3600)  # a later brick's sidecar does not override it
    settings = load_settings(small_release)
    ran = ReleaseOptions.model_validate(
        {"tractor": {"width": 1800, "height": 1800, "pixscale": 0.524},
         "depth": {"bands": ["g", "r"]}, "sweeps": {"version": "9.1"}}
    )  # fmt: skip
    ledger_for(settings).record_chain_options("release", ran.model_dump_json())
    request = ReprocessRequest(bricks=["1804p325"])
    options = dict(plan_reprocess(ReleaseLayout(small_release), request, settings).phases)
    assert options["tractor"] == ran.tractor.model_copy(update={"bricks": ["1804p325"]})
    assert options["depth"] == ran.depth
    assert options["sweeps"] == ran.sweeps
