"""The legacypipe engine: the real runbrick through the tractor flow, on legacypipe's test cases.

Each case (the north 90Prime+Mosaic case and two DECam cases) is a release directory of its own
(a copy): the tractor flow runs on the shared cluster with ``engine: legacypipe`` and the
``none`` launcher, and its catalogue must equal the one runbrick writes when invoked by hand,
here, with the arguments a survey scientist would type (and the environment legacypipe's own
tests set).  Upstream's expectations for the cases hold (mzlsbass2: exactly 3 Gaia sources;
testcase3: a point source and a galaxy at the positions ``runbrick_test.py`` checks).  A brick
SIGKILLed while it fits its blobs resumes from its checkpoint; a fit budget spent makes the flow
rerun the brick with ``--bail-out``, which sets BAILOUT; a brick region without CCDs is
recorded as "no data".
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import fitsio
import numpy as np
import pytest
from legacypipe_cases import CASES, Case, RunbrickKiller, hand_runbrick, release_copy

from lsdr.flows.report import TractorResult
from lsdr.flows.tractor import tractor
from lsdr.infra.cluster import task_runner
from lsdr.infra.legacypipe_build import LegacypipeBuild
from lsdr.infra.settings import load_settings
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import TractorOptions
from lsdr.tasks.sidecars import read_sidecar, sidecar_path

pytestmark = [pytest.mark.legacypipe, pytest.mark.slow]

ENGINE = {"engine": "legacypipe", "launcher": "none", "n_workers": 2}


def run_flow(layout: ReleaseLayout, address: str, **options: Any) -> TractorResult:
    """The tractor flow on the release's brick list with the legacypipe engine."""
    settings = {**ENGINE, **options.pop("settings", {})}
    s = load_settings(layout.root, **settings)
    result: TractorResult = tractor.with_options(task_runner=task_runner(s, address))(
        str(layout.root), options=TractorOptions(**options), settings=settings
    )
    return result


def sidecar(layout: ReleaseLayout, brick: str) -> dict[str, Any]:
    """The brick's provenance sidecar."""
    data = read_sidecar(sidecar_path(layout, "tractor", brick))
    assert data is not None
    return data


def expected_argv(case: Case, root: Path) -> list[str]:
    """The runbrick arguments of a production brick (``bin/runbrick-perlmutter.sh``'s flags)."""
    bri = case.brick[:3]
    return [
        "--brick",
        case.brick,
        "--zoom",
        *(str(v) for v in case.zoom),
        "--bands",
        "g,r,z",
        "--survey-dir",
        str(root),
        "--outdir",
        str(root),
        "--release",
        "10000",
        "--threads",
        "1",
        "--skip-calibs",
        "--pickle",
        f"{root}/pickles/{bri}/runbrick-{case.brick}-%%(stage)s.pickle",
        "--write-stage",
        "srcs",
        "--checkpoint",
        f"{root}/checkpoints/{bri}/checkpoint-{case.brick}.pickle",
        "--checkpoint-period",
        "600",
        "--no-wise",
    ]


def catalogue(path: Path) -> np.ndarray:
    """A tractor catalogue's rows."""
    return np.asarray(fitsio.read(str(path), ext="CATALOG"))


def assert_same_rows(a: np.ndarray, b: np.ndarray) -> None:
    """Same columns and every value equal (NaN equal to NaN)."""
    assert a.dtype.names == b.dtype.names and len(a) == len(b)
    for name in a.dtype.names or ():
        x, y = a[name], b[name]
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f"column {name} differs"


@pytest.fixture(scope="module")
def flow_runs(
    tmp_path_factory: pytest.TempPathFactory, dask_address: str, legacypipe: LegacypipeBuild
) -> dict[str, tuple[ReleaseLayout, TractorResult]]:
    """Each case through the tractor flow with the real runbrick, once for the module."""
    where = tmp_path_factory.mktemp("legacypipe-flow")
    runs = {}
    for case in CASES.values():
        layout = release_copy(case, where)
        runs[case.name] = (layout, run_flow(layout, dask_address, zoom=case.zoom))
    return runs


@pytest.mark.parametrize("name", list(CASES))
def test_tractor_flow_catalogue_equals_runbrick_run_by_hand(
    name: str,
    flow_runs: dict[str, tuple[ReleaseLayout, TractorResult]],
    legacypipe: LegacypipeBuild,
    tmp_path: Path,
) -> None:
    """The flow's brick: done, recorded with legacypipe's version, equal to a hand run."""
    case = CASES[name]
    layout, result = flow_runs[name]
    assert result.counts.done == 1 and not result.failed, result
    data = sidecar(layout, case.brick)
    assert data["engine"] == "legacypipe"
    assert data["engine_version"] == "legacypipe-DR11.1.0-28-g93e2d828"
    command = data["summary"]["command"]
    assert command["argv"][1:3] == ["-O", str(legacypipe.package_dir / "legacypipe/runbrick.py")]
    assert command["argv"][3:] == expected_argv(case, layout.root)
    assert command["exit_code"] == 0 and command["launcher"] == "none"

    by_hand = release_copy(case, tmp_path)
    hand_runbrick(legacypipe, by_hand.root, expected_argv(case, by_hand.root))
    mine = catalogue(layout.tractor(case.brick))
    assert_same_rows(mine, catalogue(by_hand.tractor(case.brick)))
    assert data["summary"]["rows"] == len(mine)
    # Every product runbrick listed in its checksum file is an output, with runbrick's digest.
    listed = dict(
        reversed(line.split(" *", 1))
        for line in layout.brick_checksums(case.brick).read_text().splitlines()
    )
    outputs = {o[0]: o[1] for o in data["outputs"]}
    assert listed and {p: f"sha256:{d}" for p, d in listed.items()} == {
        p: outputs.get(p) for p in listed
    }


def test_upstream_expectations_hold_for_the_flow_catalogues(
    flow_runs: dict[str, tuple[ReleaseLayout, TractorResult]],
) -> None:
    """mzlsbass2: exactly 3 Gaia DR2 sources; testcase3: upstream's PSF and galaxy positions."""
    north, _ = flow_runs["mzlsbass2"]
    cat = catalogue(north.tractor("1773p595"))
    assert int(np.sum(np.char.strip(cat["ref_cat"].astype(str)) == "G2")) == 3
    assert int(np.sum(cat["ref_id"] > 0)) == 3
    south, _ = flow_runs["testcase3"]
    cat = catalogue(south.tractor("2447p120"))
    types = np.char.strip(cat["type"].astype(str))
    assert len(cat) == 2
    psf = cat[types == "PSF"]
    assert len(psf) == 1
    assert abs(psf["ra"][0] - 244.77828) < 1e-5 and abs(psf["dec"][0] - 12.07250) < 1e-5
    galaxy = cat[np.isin(types, ["DEV", "SER"])]
    assert len(galaxy) == 1
    assert abs(galaxy["ra"][0] - 244.77973) < 1e-5 and abs(galaxy["dec"][0] - 12.07234) < 2e-5


def test_brick_sigkilled_mid_fitblobs_resumes_from_its_checkpoint(
    flow_runs: dict[str, tuple[ReleaseLayout, TractorResult]],
    dask_address: str,
    tmp_path: Path,
) -> None:
    """SIGKILL once the first checkpoint is written: rerun (infra), blobs kept, same catalogue."""
    case = CASES["mzlsbass2"]
    layout = release_copy(case, tmp_path)
    checkpoint = layout.checkpoint(case.brick)

    def written() -> bool:
        return checkpoint.exists() and checkpoint.stat().st_size > 0

    with RunbrickKiller(layout.root, written) as killer:
        result = run_flow(
            layout, dask_address, zoom=case.zoom, checkpoint_period=1, keep_checkpoints=True
        )
    assert killer.killed, "the brick finished before its runbrick could be killed"
    assert result.counts.done == 1, result
    log = layout.brick_log(case.brick).read_text()
    assert log.count("--- none on ") == 2, "one start, killed, and one resumed"
    resumed = log.split("--- none on ")[-1]
    kept = [int(w.split()[0]) for w in resumed.split("Keeping ")[1:] if " checkpointed" in w]
    assert kept and kept[0] >= 1, "the rerun kept no blob of the checkpoint"
    data = sidecar(layout, case.brick)
    assert data["summary"]["checkpoint_blobs_kept"] == kept[0]
    reference, _ = flow_runs["mzlsbass2"]
    a, b = catalogue(layout.tractor(case.brick)), catalogue(reference.tractor(case.brick))
    assert len(a) == len(b)
    order_a, order_b = np.lexsort((a["dec"], a["ra"])), np.lexsort((b["dec"], b["ra"]))
    assert np.allclose(a["ra"][order_a], b["ra"][order_b], atol=1e-7, rtol=0)
    assert np.allclose(a["dec"][order_a], b["dec"][order_b], atol=1e-7, rtol=0)
    assert list(a["type"][order_a]) == list(b["type"][order_b])


def test_fit_budget_spent_sends_sigusr1_then_reruns_the_brick_with_bail_out(
    dask_address: str, tmp_path: Path
) -> None:
    """A budget of 0.5 s of fitting: SIGUSR1 (a timeout), then a second start with --bail-out.

    How the bail-out run ends depends on how many blobs were saved before the signal (with none,
    legacypipe DR11.1's coadds stage fails on a brick without fitted sources): the sequence of
    starts is what is checked here, BAILOUT itself below.
    """
    case = CASES["mzlsbass2"]
    layout = release_copy(case, tmp_path)
    run_flow(layout, dask_address, zoom=case.zoom, fit_budget_s=0.5, checkpoint_period=1)
    log = layout.brick_log(case.brick).read_text()
    starts = [part for part in log.split("--- none on ")[1:]]
    assert len(starts) == 2, "one start stopped by its budget, one rerun"
    assert "SIGUSR1 was received" in starts[0] and "--bail-out" not in starts[0].splitlines()[0]
    assert "--bail-out" in starts[1].splitlines()[0]


def test_bail_out_keeps_the_checkpointed_blobs_and_sets_bailout_on_the_rest(
    dask_address: str, legacypipe: LegacypipeBuild, tmp_path: Path
) -> None:
    """Upstream's recipe: fit 3 blobs into the checkpoint by hand, then the flow with bail_out.

    The blobs not in the checkpoint are skipped and their pixels get BAILOUT (upstream expects
    at least 1000 of them), the 3 kept blobs' sources are in the catalogue.
    """
    case = CASES["mzlsbass2"]
    layout = release_copy(case, tmp_path)
    checkpoint = layout.checkpoint(case.brick)
    checkpoint.parent.mkdir(parents=True)
    hand_runbrick(
        legacypipe,
        layout.root,
        [
            *("--brick", case.brick, "--zoom", *(str(v) for v in case.zoom)),
            *("--survey-dir", str(layout.root), "--outdir", str(tmp_path / "first")),
            *("--no-wise", "--stage", "fitblobs", "--write-stage", "srcs"),
            *("--checkpoint", str(checkpoint), "--nblobs", "3"),
        ],
    )
    result = run_flow(layout, dask_address, zoom=case.zoom, bail_out=True)
    assert result.counts.done == 1, result
    data = sidecar(layout, case.brick)
    assert "--bail-out" in data["summary"]["command"]["argv"]
    assert data["summary"]["checkpoint_blobs_kept"] == 3
    # The bit's value as runbrick itself declares it in the catalogue's header.
    bailout = int(fitsio.read_header(str(layout.tractor(case.brick)), 0)["MB_BAILOUT"])
    maskbits = fitsio.read(str(layout.coadd_maskbits(case.brick)), ext="MASKBITS")
    assert int(np.count_nonzero(maskbits & bailout)) >= 1000


def test_brick_region_without_ccds_is_recorded_as_no_data(
    dask_address: str, tmp_path: Path
) -> None:
    """A zoom on the brick's corner, far from the cut-outs: runbrick's "No CCDs", no failure."""
    case = CASES["mzlsbass2"]
    layout = release_copy(case, tmp_path)
    result = run_flow(layout, dask_address, zoom=(0, 100, 0, 100))
    assert not result.failed, result
    data = sidecar(layout, case.brick)
    assert data["state"] == "done"
    assert data["summary"]["status"] == "nothing-to-do"
    assert data["summary"]["reason"].startswith("No CCDs touching brick")
    assert not layout.tractor(case.brick).exists()
    assert case.brick in result.nothing_to_do


def test_lsdr_run_tractor_takes_engine_launcher_and_zoom(tmp_path: Path) -> None:
    """``lsdr run tractor --engine legacypipe --launcher none --zoom …``: the real runbrick ran."""
    case = CASES["testcase6"]
    layout = release_copy(case, tmp_path)
    command = [sys.executable, "-m", "lsdr", "run", "tractor", "--release-dir", str(layout.root)]
    flags = ["--engine", "legacypipe", "--launcher", "none", "--zoom", *map(str, case.zoom)]
    try:
        done = subprocess.run(
            [*command, *flags, "--workers", "1"], capture_output=True, text=True, timeout=600
        )
    finally:
        subprocess.run(
            [sys.executable, "-m", "lsdr", "server", "down", "--release-dir", str(layout.root)],
            capture_output=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    data = sidecar(layout, case.brick)
    assert data["engine"] == "legacypipe" and data["state"] == "done"
    assert data["summary"]["command"]["argv"][3:] == expected_argv(case, layout.root)
