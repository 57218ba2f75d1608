"""Stage machinery (pickles, --stage, --write-stage, --force-all), checkpoints, run_brick."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
from runbrick_survey import BRICK, prepared_survey, private_copy

from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.runbrick.options import RunbrickOptions
from lsdr.survey.runbrick.stages import (
    Checkpointer,
    read_checkpoint,
    read_stage_pickle,
    run_brick,
    run_stages,
    write_checkpoint,
)
from lsdr.survey.runbrick.types import BrickGeometry


def toy_chain(calls: list[str]) -> dict[str, Any]:
    """tims → refs → coadds on numbers, recording each call."""

    def tims(geom: BrickGeometry) -> dict[str, Any]:
        calls.append("tims")
        return {"n": geom.width}

    def refs(n: int) -> dict[str, Any]:
        calls.append("refs")
        return {"m": n + 1}

    def coadds(n: int, m: int) -> dict[str, Any]:
        calls.append("coadds")
        return {"total": n + m}

    return {"tims": tims, "refs": refs, "coadds": coadds}


def fresh_state() -> dict[str, Any]:
    """The context a stage chain starts from."""
    return {"geom": BrickGeometry.for_brick(BRICK, width=10, height=10)}


def test_write_stage_then_later_stage_loads_the_pickle(tmp_path: Path):
    """--write-stage tims pickles; --stage coadds then loads it and does not rerun tims."""
    pattern = str(tmp_path / "runbrick-%(brick)s-%(stage)s.pickle")
    calls: list[str] = []
    opts = RunbrickOptions(stages=("tims",), write_stages=("tims",))
    run_stages(toy_chain(calls), fresh_state(), opts, pattern)
    path = tmp_path / f"runbrick-{BRICK}-tims.pickle"
    assert calls == ["tims"] and path.exists()
    assert read_stage_pickle(path, BRICK, "tims") == {"n": 10}
    calls.clear()
    state = run_stages(
        toy_chain(calls), fresh_state(), RunbrickOptions(stages=("coadds",)), pattern
    )
    assert calls == ["refs", "coadds"] and state["total"] == 21
    assert state["_stages_loaded"] == ["tims"] and state["_stages_run"] == ["refs", "coadds"]
    assert not (tmp_path / f"runbrick-{BRICK}-coadds.pickle").exists()


def test_requested_stage_always_runs_and_force_all_ignores_pickles(tmp_path: Path):
    """A requested stage reruns despite its pickle; --force-all reruns the prerequisites too."""
    pattern = str(tmp_path / "p-%(stage)s.pickle")
    calls: list[str] = []
    opts = RunbrickOptions(stages=("refs",), write_stages=("tims", "refs"))
    run_stages(toy_chain(calls), fresh_state(), opts, pattern)
    assert calls == ["tims", "refs"]
    calls.clear()
    run_stages(toy_chain(calls), fresh_state(), RunbrickOptions(stages=("refs",)), pattern)
    assert calls == ["refs"]
    calls.clear()
    opts = RunbrickOptions(stages=("coadds",), force_all=True)
    run_stages(toy_chain(calls), fresh_state(), opts, pattern)
    assert calls == ["tims", "refs", "coadds"]


def test_a_stage_requested_beyond_the_chain_runs_its_last_stage(tmp_path: Path):
    """writecat (the default) runs the chain up to its last available stage."""
    calls: list[str] = []
    run_stages(toy_chain(calls), fresh_state(), RunbrickOptions(), str(tmp_path / "%(stage)s"))
    assert calls == ["tims", "refs", "coadds"]


def test_another_bricks_pickle_is_refused(tmp_path: Path):
    """A pickle of another brick under this name is an input error, not silently used."""
    path = tmp_path / "p-tims.pickle"
    path.write_bytes(pickle.dumps({"brickname": "0001p000", "stage": "tims", "state": {}}))
    with pytest.raises(InputFileError, match=r"p-tims\.pickle"):
        run_stages(toy_chain([]), fresh_state(), RunbrickOptions(stages=("refs",)),
                   str(tmp_path / "p-%(stage)s.pickle"))  # fmt: skip


def test_checkpoint_keeps_only_matching_brick_and_bbox(tmp_path: Path):
    """Entries survive only with the same brick and the same blob bbox."""
    path = tmp_path / "checkpoint.pickle"
    write_checkpoint(
        path, BRICK, {0: ((0, 5, 0, 5), "a"), 1: ((5, 9, 5, 9), "b"), 2: ((1, 2, 1, 2), "c")}
    )
    kept = read_checkpoint(path, BRICK, {0: (0, 5, 0, 5), 1: (5, 9, 5, 10)})
    assert kept == {0: "a"}
    assert read_checkpoint(path, "0001p000", {0: (0, 5, 0, 5)}) == {}
    path.write_bytes(b"garbage")
    assert read_checkpoint(path, BRICK, {0: (0, 5, 0, 5)}) == {}
    assert read_checkpoint(tmp_path / "none", BRICK, {}) == {}


class FakeClock:
    """A monotonic clock the test moves by hand (the checkpointer's only source of time)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        """The time the test has set."""
        return self.now


BBOXES = {0: (0, 1, 0, 1), 1: (1, 2, 1, 2), 2: (2, 3, 2, 3), 3: (3, 4, 3, 4)}


def test_checkpointer_writes_after_its_period(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Nothing is written before the period; the first blob after it writes all; flush the rest.

    The clock is the test's: the order of events decides, not how fast the machine is.
    """
    from lsdr.survey.runbrick import stages

    clock = FakeClock()
    monkeypatch.setattr(stages, "time", clock)
    path = tmp_path / "cp.pickle"
    cp = Checkpointer(path, BRICK, period=600.0, last_write=clock.now)
    cp.add(0, BBOXES[0], "x")
    clock.now += 599.0
    cp.add(1, BBOXES[1], "y")
    assert not path.exists(), "written before its period"
    clock.now += 1.0  # 600 s since the start
    cp.add(2, BBOXES[2], "z")
    assert read_checkpoint(path, BRICK, BBOXES) == {0: "x", 1: "y", 2: "z"}
    clock.now += 599.0  # the period restarts at each write
    cp.add(3, BBOXES[3], "w")
    assert read_checkpoint(path, BRICK, BBOXES) == {0: "x", 1: "y", 2: "z"}
    cp.flush()
    assert read_checkpoint(path, BRICK, BBOXES) == {0: "x", 1: "y", 2: "z", 3: "w"}
    inode = path.stat().st_ino
    cp.flush()  # nothing new: not rewritten (a rewrite renames a new file onto the name)
    assert path.stat().st_ino == inode
    assert [p.name for p in tmp_path.iterdir()] == ["cp.pickle"]


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory) -> ReleaseLayout:
    """The prepared synthetic survey."""
    return prepared_survey(tmp_path_factory)


@pytest.mark.slow
def test_coadds_from_the_tims_pickle_without_images(survey: ReleaseLayout, tmp_path: Path):
    """Pickle tims, delete the images, then --stage coadds still writes the coadds."""
    layout = private_copy(survey, tmp_path / "rel")
    opts = RunbrickOptions(width=300, height=300, stages=("tims",), write_stages=("tims",))
    first = run_brick(layout, BRICK, opts)
    assert first.status == "done" and first.stages_run == ("tims",) and first.n_ccds > 0
    assert layout.stage_pickle(BRICK, "tims").exists()
    shutil.rmtree(layout.images_dir)
    second = run_brick(layout, BRICK, RunbrickOptions(width=300, height=300, stages=("coadds",)))
    assert second.status == "done"
    assert second.stages_loaded == ("tims",) and "tims" not in second.stages_run
    assert layout.coadd(BRICK, "image", "r") in second.products
    assert layout.coadd_jpeg(BRICK, "image").exists()
    # Without the pickle the images are needed: --force-all fails on the missing files.
    with pytest.raises(InputFileError):
        run_brick(layout, BRICK, RunbrickOptions(width=300, height=300, stages=("coadds",),
                                                 force_all=True))  # fmt: skip
    assert layout.brick_log(BRICK).exists()


@pytest.mark.slow
def test_nothing_to_do_and_skip(survey: ReleaseLayout, tmp_path: Path):
    """A brick without CCDs is "nothing-to-do" with no output; --skip honours a catalogue."""
    layout = private_copy(survey, tmp_path / "rel")
    result = run_brick(layout, "0001p000", RunbrickOptions(width=100, height=100))
    assert result.status == "nothing-to-do" and result.products == ()
    assert not layout.coadd_dir("0001p000").exists()
    import fitsio
    import numpy as np

    path = layout.tractor(BRICK)
    path.parent.mkdir(parents=True)
    fitsio.write(str(path), np.zeros(1, [("ra", "f8")]), extname="CATALOG")
    skipped = run_brick(layout, BRICK, RunbrickOptions(skip=True))
    assert skipped.status == "skipped"
