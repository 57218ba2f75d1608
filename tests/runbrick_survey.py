"""A small synthetic survey after the pre-tractor phases, for the runbrick tests (built once)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lsdr.survey.core import bricks as grid
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.pretractor.calibs import merge_calibs
from lsdr.survey.pretractor.ccdcuts import CutOptions
from lsdr.survey.pretractor.ccdtables import merge_ccd_tables
from lsdr.survey.pretractor.discover import discover_images, read_image_list, write_image_list
from lsdr.survey.pretractor.zeropoints.image import measure_image
from lsdr.survey.simulate.config import PassSpec, SimulationConfig
from lsdr.survey.simulate.simulator import simulate_survey

BRICK = "1804p325"
REGION = grid.RaDecBox(180.40, 180.50, 32.45, 32.55)  # around 1804p325's centre


def build(
    root: Path,
    *,
    passes: int = 1,
    star_density: float = 8000.0,
    flagged_cr_fraction: float | None = None,
    region: grid.RaDecBox = REGION,
) -> ReleaseLayout:
    """Simulate g, r, z over the region and run discover, zeropoints and the merges.

    The default star density gives enough stars per CCD for the ccdnmatch cut on this small sky;
    ``flagged_cr_fraction`` overrides the simulator's share of cosmic rays the CP flags;
    ``region`` the sky simulated (its bricks plus a margin).
    """
    extra = {} if flagged_cr_fraction is None else {"flagged_cr_fraction": flagged_cr_fraction}
    config = SimulationConfig(
        region=region,
        passes=(
            PassSpec("90prime", "g", passes),
            PassSpec("90prime", "r", passes),
            PassSpec("mosaic", "z", passes),
        ),
        star_density=star_density,
        reprocessed=0,
        workers=2,
        **extra,
    )
    simulate_survey(root, config)
    layout = ReleaseLayout(root)
    write_image_list(layout, discover_images(layout))
    images = read_image_list(layout)
    for image in images:
        measure_image(layout, image, run_calibs=True)
        merge_calibs(layout, image)
    merge_ccd_tables(
        layout,
        [layout.zpt_annotated(i) for i in images],
        cut_options=CutOptions(present_ccds_only=True, binned_pixels=True),
    )
    return layout


def prepared_survey(factory: pytest.TempPathFactory) -> ReleaseLayout:
    """The survey, built on first use in the session's base temp dir (read-only for callers)."""
    root = factory.getbasetemp() / "runbrick-survey"
    done = root / ".ready"
    if not done.exists():
        if root.exists():
            shutil.rmtree(root)
        build(root)
        done.write_text("ok\n")
    return ReleaseLayout(root)


def private_copy(layout: ReleaseLayout, dest: Path) -> ReleaseLayout:
    """A copy of the prepared survey a test may write into or delete from."""
    shutil.copytree(layout.root, dest, ignore=shutil.ignore_patterns("coadd", "pickles"))
    return ReleaseLayout(dest)
