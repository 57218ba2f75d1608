"""Failure classes of the real runbrick, each from a run that really fails the way production does.

Out of memory under the unit's memory limit, killed by a signal from outside, a science error
(a truncated image), a usage error (a brick the survey does not have) and an environment error
(legacypipe's dependencies missing, or no build at all): each is judged from the exit status
and the log (``survey/engines/legacypipe/judge.py``) into the class whose policy
``docs/orchestration.md`` gives, and the message names what to look at.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from legacypipe_cases import RunbrickKiller
from required_in_ci import legacypipe_test_case

from lsdr.infra.legacypipe_build import LegacypipeBuild
from lsdr.survey.core.errors import MissingDependencyError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.engines.base import Outcome, UnitOutput
from lsdr.survey.engines.legacypipe.engine import LegacypipeEngine
from lsdr.survey.runbrick.options import RunbrickOptions
from lsdr.tasks.sandbox import memory_limit
from lsdr.tasks.tractor import tractor_unit
from lsdr.tasks.unit import Unit

pytestmark = [pytest.mark.legacypipe, pytest.mark.slow]

BRICK = "1773p595"
ZOOM = (1300, 1500, 700, 900)
OPTIONS = RunbrickOptions(zoom=ZOOM, force_all=True)


@pytest.fixture()
def north(tmp_path: Path, legacypipe: LegacypipeBuild) -> ReleaseLayout:
    """A private copy of the north test case (runs write into it)."""
    root = tmp_path / "mzlsbass2"
    shutil.copytree(legacypipe_test_case("mzlsbass2"), root)
    return ReleaseLayout(root)


def failed(output: UnitOutput) -> tuple[str | None, str]:
    """A failed output's class and message (anything else fails the test)."""
    assert output.outcome is Outcome.FAILED, output
    return output.failure_class, output.message


def test_out_of_memory_under_the_unit_limit_is_oom(north: ReleaseLayout) -> None:
    """150 MB for the unit: runbrick cannot even load its libraries; class oom, not science."""
    with memory_limit(150):
        failure, message = failed(LegacypipeEngine().runbrick(north, BRICK, OPTIONS))
    assert failure == "oom"
    assert "ran out of memory" in message and str(north.brick_log(BRICK)) in message


def test_killed_by_a_signal_from_outside_is_infra(north: ReleaseLayout) -> None:
    """SIGKILL while it fits (the OOM killer, scancel): infra, rerun elsewhere; names it."""
    log = north.brick_log(BRICK)

    def fitting() -> bool:
        return log.exists() and "Running stage fitblobs" in log.read_text(errors="replace")

    with RunbrickKiller(north.root, fitting, within_s=120) as killer:
        failure, message = failed(LegacypipeEngine().runbrick(north, BRICK, OPTIONS))
    assert killer.killed
    assert failure == "infra" and "SIGKILL" in message


def test_truncated_image_is_a_science_error_naming_the_file(north: ReleaseLayout) -> None:
    """Half an image: runbrick exits 1; science (not retried); the unit names the bad file."""
    image = north.root / "images/90prime/CP/V2.3/CP20170429/ksb_170430_055945_ooi_r_ls9.CCD4.fits"
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    unit = Unit(
        "tractor",
        BRICK,
        inputs=(str(image),),
        options=(("zoom", list(ZOOM)),),
        engine="legacypipe",
    )
    output = tractor_unit(north, unit)
    failure, message = failed(output)
    assert failure == "science"
    assert "exited 1" in message
    assert f"{image} is truncated" in message and "re-transfer" in message


def test_brick_missing_from_the_survey_is_a_usage_error(north: ReleaseLayout) -> None:
    """A grid brick the survey-bricks table lacks: runbrick's RunbrickError, class usage."""
    failure, message = failed(LegacypipeEngine().runbrick(north, "1772p597", OPTIONS))
    assert failure == "usage" and "not in the survey-bricks table" in message


def test_missing_dependencies_are_an_environment_error(north: ReleaseLayout) -> None:
    """legacypipe without the Tractor on its path: ModuleNotFoundError, class environment."""
    engine = LegacypipeEngine()
    only_legacypipe = {"PYTHONPATH": str(engine.setup.build.package_dir)}
    engine.setup = dataclasses.replace(engine.setup, extra_env=only_legacypipe)
    failure, message = failed(engine.runbrick(north, BRICK, OPTIONS))
    assert failure == "environment"
    assert "No module named 'tractor'" in message


def test_no_build_is_a_missing_dependency_naming_the_fix(
    north: ReleaseLayout, tmp_path: Path
) -> None:
    """A build prefix with nothing in it: one line naming the prefix and ``make legacypipe``."""
    engine = LegacypipeEngine(legacypipe_prefix=tmp_path / "nothing-here")
    with pytest.raises(MissingDependencyError) as err:
        engine.runbrick(north, BRICK, OPTIONS)
    assert str(tmp_path / "nothing-here") in str(err.value)
    assert "make legacypipe" in str(err.value)
