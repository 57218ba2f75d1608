"""The depth cut: greedy CCD choice per brick, its outputs, a layout that cannot double-count."""

from __future__ import annotations

import fitsio
import numpy as np
import pytest
from test_ccdtables import annotated_from_truth, run_probe

from lsdr.infra.legacypipe_build import LegacypipeBuild
from lsdr.survey.core import bricks as grid
from lsdr.survey.core.bricks import write_survey_bricks
from lsdr.survey.core.errors import UsageError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.pretractor.bricklist import bricks_for_ccds
from lsdr.survey.pretractor.ccdtables import merge_ccd_tables, read_survey_ccds
from lsdr.survey.pretractor.depthcut import choose_ccds, depth_cut
from lsdr.survey.simulate.config import PassSpec, SimulationConfig
from lsdr.survey.simulate.simulator import simulate_survey

REGION = grid.RaDecBox(180.40, 180.50, 32.45, 32.55)


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory) -> ReleaseLayout:
    """A synthetic survey with 6 passes of 90Prime g and 2 of Mosaic z, merged without cuts."""
    root = tmp_path_factory.mktemp("depthcut")
    passes = (PassSpec("90prime", "g", 6), PassSpec("mosaic", "z", 2))
    simulate_survey(root, SimulationConfig(region=REGION, passes=passes, workers=2, reprocessed=0))
    layout = ReleaseLayout(root)
    merge_ccd_tables(layout, annotated_from_truth(layout), cut=False)
    write_survey_bricks(layout.survey_bricks)
    return layout


def test_deep_targets_keep_every_overlapping_ccd(survey: ReleaseLayout):
    """Unreachable targets: every CCD that overlaps the unique area deepens it and is kept."""
    ccds = read_survey_ccds(survey)
    brick = grid.brick_by_name("1804p325")
    keep, overlapping, npix = choose_ccds(ccds, brick, target_depth={"g": 30.0, "z": 30.0})
    assert overlapping.any()
    assert np.array_equal(keep, overlapping)
    assert np.all(npix[overlapping] > 0)


def test_shallow_targets_keep_fewer_best_first(survey: ReleaseLayout):
    """Easy targets: fewer CCDs; the first g CCD chosen is the best by 1/(sig1·seeing²)."""
    ccds = read_survey_ccds(survey)
    brick = grid.brick_by_name("1804p325")
    keep, overlapping, _ = choose_ccds(ccds, brick, target_depth={"g": 15.0})
    g = (ccds["filter"] == b"g") & overlapping
    assert 0 < keep.sum() < g.sum()
    assert not keep[ccds["filter"] == b"z"].any()  # z has no target: nothing kept
    pixscale = 3600 * np.sqrt(np.abs(ccds["cd1_1"] * ccds["cd2_2"] - ccds["cd1_2"] * ccds["cd2_1"]))
    quality = 1.0 / (ccds["sig1"] * (ccds["fwhm"] * pixscale) ** 2)
    best = np.flatnonzero(g)[np.argmax(quality[g])]
    assert keep[best]


def test_depth_cut_outputs_and_layout(survey: ReleaseLayout):
    """Per-brick tables, merged table and kd-tree live in depthcut/, out of legacypipe's glob."""
    bricks = bricks_for_ccds(read_survey_ccds(survey), REGION)
    result = depth_cut(survey, bricks, target_depth={"g": 23.0, "z": 22.0}, kdtree=True)
    assert set(result.per_brick) == set(bricks)
    union: set[tuple[str, int]] = set()
    for brick in bricks:
        table = fitsio.read(str(survey.depthcut_ccds(brick)))
        assert int(table["passed_depth_cut"].sum()) == result.per_brick[brick]
        passed = table[table["passed_depth_cut"]]
        union |= set(
            zip(passed["image_filename"].tolist(), passed["image_hdu"].tolist(), strict=True)
        )
    merged = fitsio.read(str(result.table))
    assert {
        (str(f), int(h)) for f, h in zip(merged["image_filename"], merged["image_hdu"], strict=True)
    } == union
    assert result.n_kept == len(merged) <= result.n_in
    assert result.table.parent == survey.depthcut_dir and result.kdtree is not None
    assert not list(survey.root.glob("survey-ccds*depthcut*"))
    assert (survey.depthcut_dir / "images").resolve() == survey.images_dir.resolve()
    with pytest.raises(UsageError):
        depth_cut(survey, [])


@pytest.mark.legacypipe
@pytest.mark.slow
def test_real_legacypipe_reads_the_depthcut_survey_dir(
    survey: ReleaseLayout, legacypipe: LegacypipeBuild
):
    """runbrick's readers see only the depth-cut CCDs in depthcut/, and all CCDs in the release."""
    bricks = bricks_for_ccds(read_survey_ccds(survey), REGION)
    result = depth_cut(survey, bricks, target_depth={"g": 23.0, "z": 22.0})
    cut = run_probe(legacypipe, survey.depthcut_dir, bricks)
    full = run_probe(legacypipe, survey.root, bricks)
    assert cut["n"] == result.n_kept and cut["kd"] == 1
    assert full["n"] == len(read_survey_ccds(survey)) and full["kd"] == 0
    for brick in bricks:
        assert set(map(tuple, cut["bricks"][brick])) <= set(map(tuple, full["bricks"][brick]))  # type: ignore[index]
