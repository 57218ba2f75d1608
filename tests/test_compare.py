"""``survey/compare``: lite against legacypipe on synthetic runs whose differences are known.

Each brick's legacypipe run holds 50 counted sources on a whole-brick grid of 100² pixels
(9.432″); lite's is the same catalogue with 3 sources dropped, 2 added, fluxes × 1.05, Dec
moved by +0.1″ and 5 stars retyped REX; its maskbits differ in a known set of pixels and its
depth maps are known multiples of legacypipe's.  Every expected number follows from that
construction, not from the code under test.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import fitsio
import numpy as np
import pytest

from lsdr.infra.ledger import Ledger, UnitFinish, default_url
from lsdr.survey.compare.metrics import MaskbitAgreement
from lsdr.survey.compare.runs import Comparison, compare_runs, write_comparison
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.runbrick.types import BrickGeometry
from lsdr.survey.simulate.truth import TRUTH_DTYPE

BANDS = ("g", "r", "z")
WIDTH = 100
PIXSCALE = 3600 * 0.262 / WIDTH
BRICKS = ("1804p325", "1801p322")
BRIGHT, SATUR_G = 2, 4
N_LP = 50
STARS = range(0, 40)
"""legacypipe's bright PSF sources (S/N > 20 in every band)."""
GALAXIES = range(40, 45)
"""Bright REX sources."""
FAINT = range(45, 50)
"""Faint PSF sources (total S/N ≈ 5)."""
DROPPED = (0, 1, 45)
"""Not in lite's catalogue: two bright stars and a faint one."""
RETYPED = (2, 3, 4, 5, 6)
"""Stars lite types REX."""
FLUX_FACTOR = 1.05
DEC_SHIFT_ARCSEC = 0.1
LITE_EXTRA = 2


@dataclass(frozen=True)
class Runs:
    """Two synthetic run directories and the truth catalogue."""

    lite: Path
    legacypipe: Path
    truth: Path
    lp_flux: dict[str, dict[str, np.ndarray]]
    """Per brick, per band: legacypipe's fluxes of its 50 counted sources."""


def _catalog(n: int) -> np.ndarray:
    cols = [("ra", "f8"), ("dec", "f8"), ("type", "S3"), ("brick_primary", "?")]
    cols += [("bx", "f4"), ("by", "f4"), ("ref_cat", "S2"), ("ref_epoch", "f4")]
    cols += [(f"flux_{b}", "f4") for b in BANDS] + [(f"flux_ivar_{b}", "f4") for b in BANDS]
    return np.zeros(n, cols)


def _write_catalog(layout: ReleaseLayout, brick: str, cat: np.ndarray) -> None:
    path = layout.tractor(brick)
    path.parent.mkdir(parents=True, exist_ok=True)
    fitsio.write(str(path), cat, extname="CATALOG", clobber=True)


def _write_map(path: Path, data: np.ndarray, extname: str, header: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with fitsio.FITS(str(path), "rw", clobber=True) as f:
        f.write(None)
        f.write(data, extname=extname, header=[{"name": k, "value": v} for k, v in header.items()])


def _make_brick(root: Path, brick: str, cat: np.ndarray, maskbits: np.ndarray, depth: dict) -> None:
    layout = ReleaseLayout(root)
    _write_catalog(layout, brick, cat)
    wcs = {"CD2_2": PIXSCALE / 3600, "CRPIX1": WIDTH / 2 + 0.5, "CRPIX2": WIDTH / 2 + 0.5}
    names = {"MB_NPRIMARY": 1, "MB_BRIGHT": BRIGHT, "MB_SATUR_G": SATUR_G, "MB_SATUR_R": 8}
    _write_map(layout.coadd_maskbits(brick), maskbits, "MASKBITS", {**wcs, **names})
    for b in BANDS:
        _write_map(layout.coadd(brick, "depth", b), depth[b].astype(np.float32), "IMAGE", wcs)
        nexp = np.ones((WIDTH, WIDTH), np.int16)
        _write_map(layout.coadd(brick, "nexp", b), nexp, "IMAGE", wcs)


def _brick_runs(root: Path, brick: str, rng: np.random.Generator) -> tuple[dict, np.ndarray]:
    """Write one brick of both runs; legacypipe's fluxes and the truth rows of the brick."""
    geom = BrickGeometry.for_brick(brick, width=WIDTH, height=WIDTH, pixscale=PIXSCALE)
    # A 10 × 7 grid of positions (x, y ≥ 30: clear of the BRIGHT square at 10–21).
    gx, gy = np.meshgrid(np.arange(30, 96, 6.5)[:10], np.arange(30, 96, 9.0)[:7])
    x, y = gx.ravel()[: N_LP + 5], gy.ravel()[: N_LP + 5]
    ra, dec = geom.wcs().pixel_to_radec(x + 1, y + 1)
    lp = _catalog(N_LP + 3)
    lp["ra"], lp["dec"] = ra[: N_LP + 3], dec[: N_LP + 3]
    lp["bx"], lp["by"] = x[: N_LP + 3], y[: N_LP + 3]
    lp["brick_primary"] = True
    lp["type"] = "PSF"
    lp["type"][list(GALAXIES)] = "REX"
    for b in BANDS:
        lp[f"flux_{b}"] = rng.uniform(100, 1000, N_LP + 3)
        lp[f"flux_{b}"][list(FAINT)] = 3.0
        lp[f"flux_ivar_{b}"] = 1.0
    lp["brick_primary"][N_LP] = False  # not counted: outside the brick's unique area
    lp["type"][N_LP + 1] = "DUP"  # not counted: a Gaia duplicate
    for b in BANDS:  # not counted: a reference star without data (flux and ivar 0)
        lp[f"flux_{b}"][N_LP + 2] = lp[f"flux_ivar_{b}"][N_LP + 2] = 0.0
    keep = [i for i in range(N_LP) if i not in DROPPED]
    lite = _catalog(len(keep) + LITE_EXTRA)
    lite[: len(keep)] = lp[keep]
    for b in BANDS:
        lite[f"flux_{b}"][: len(keep)] = lp[f"flux_{b}"][keep] * FLUX_FACTOR
    lite["dec"][: len(keep)] += DEC_SHIFT_ARCSEC / 3600
    lite["type"][[keep.index(i) for i in RETYPED]] = "REX"
    extra = slice(len(keep), None)
    lite["ra"][extra], lite["dec"][extra] = ra[N_LP + 3 :], dec[N_LP + 3 :]
    lite["bx"][extra], lite["by"][extra] = x[N_LP + 3 :], y[N_LP + 3 :]
    lite["brick_primary"][extra] = True
    lite["type"][extra] = "PSF"
    for b in BANDS:
        lite[f"flux_{b}"][extra], lite[f"flux_ivar_{b}"][extra] = 500.0, 1.0
    # Maskbits: BRIGHT on a 10 × 10 square, lite's one pixel row lower; SATUR_G in lite only.
    mlp = np.zeros((WIDTH, WIDTH), np.int32)
    mlp[10:20, 10:20] |= BRIGHT
    mlite = np.zeros((WIDTH, WIDTH), np.int32)
    mlite[11:21, 10:20] |= BRIGHT
    mlite[5, 60:67] |= SATUR_G
    # Depth: g lite = 0.9 × lp (lp's first row 0); r 1.1 × lp (lite's last column 0); z equal.
    dlp = {b: np.full((WIDTH, WIDTH), 100.0) for b in BANDS}
    dlp["g"][0, :] = 0
    dlite = {"g": 0.9 * dlp["g"], "r": 1.1 * dlp["r"], "z": dlp["z"].copy()}
    dlite["r"][:, -1] = 0
    _make_brick(root / "legacypipe", brick, lp, mlp, dlp)
    _make_brick(root / "lite", brick, lite, mlite, dlite)
    truth = np.zeros(N_LP, TRUTH_DTYPE)
    truth["ra"], truth["dec"] = lp["ra"][:N_LP], lp["dec"][:N_LP]
    truth["type"] = lp["type"][:N_LP]
    for b in BANDS:
        truth[f"flux_{b}"] = lp[f"flux_{b}"][:N_LP]
    truth["ref_epoch"] = 2015.5
    return {b: lp[f"flux_{b}"][:N_LP].astype(np.float64) for b in BANDS}, truth


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """Both runs of two bricks, a ledger for lite's, and the truth of both bricks."""
    root = tmp_path_factory.mktemp("compare")
    rng = np.random.default_rng(7)
    fluxes, truths = {}, []
    for brick in BRICKS:
        fluxes[brick], t = _brick_runs(root, brick, rng)
        truths.append(t)
    truth = root / "truth.fits"
    fitsio.write(str(truth), np.concatenate(truths), clobber=True)
    ledger = Ledger(default_url(ReleaseLayout(root / "lite").state_dir))
    ledger.plan("tractor", BRICKS)
    ledger.start("tractor", BRICKS)
    ledger.finish(
        "tractor",
        [
            UnitFinish(key=BRICKS[0], state="done", wall_s=12.5, peak_mem_mb=300.0),
            UnitFinish(key=BRICKS[1], state="done", wall_s=7.5, peak_mem_mb=450.0),
        ],
    )
    ledger.close()
    return Runs(root / "lite", root / "legacypipe", truth, fluxes)


@pytest.fixture(scope="module")
def compared(runs: Runs) -> Comparison:
    """The comparison of both bricks, with the truth."""
    return compare_runs(runs.lite, runs.legacypipe, truth=runs.truth)


def test_bricks_default_to_those_both_runs_catalogued(compared: Comparison) -> None:
    """Without --bricks, both bricks (each has a catalogue in both runs) are compared."""
    assert sorted(b.brick for b in compared.result.bricks) == sorted(BRICKS)


def test_unmeasured_reference_stars_are_left_out_with_a_note(compared: Comparison) -> None:
    """legacypipe's source with flux_ivar 0 in every band is not counted; a note says so."""
    for c in compared.result.bricks:
        assert c.n_legacypipe == N_LP
        assert "legacypipe: 1 primary source without data in any band (flux_ivar 0) left out" in (
            c.notes
        )


def test_source_counts_and_match_fractions_are_the_constructed_ones(compared: Comparison) -> None:
    """50 legacypipe sources, 49 lite (3 dropped, 2 added), 47 matched; S/N > 10: 43 of 45."""
    for c in compared.result.bricks:
        assert (c.n_legacypipe, c.n_lite, c.n_matched) == (50, 49, 47)
        assert c.matched_of_lite == pytest.approx(47 / 49)
        assert c.matched_of_legacypipe == pytest.approx(47 / 50)
        assert c.lite_extra_of_legacypipe == pytest.approx(2 / 50)
        assert c.n_legacypipe_bright == 45
        assert c.bright_matched == pytest.approx(43 / 45)
    all_ = compared.result.combined
    assert (all_.n_legacypipe, all_.n_lite, all_.n_matched) == (100, 98, 94)
    assert all_.bright_matched == pytest.approx(86 / 90)


def test_flux_ratio_and_pull_of_point_sources(runs: Runs, compared: Comparison) -> None:
    """Stars PSF in both with S/N > 20 (33 per brick): ratio 1.05, pull 0.05·f/√2."""
    stars = [i for i in STARS if i not in DROPPED and i not in RETYPED]
    for c in compared.result.bricks:
        for b in BANDS:
            f = c.flux[b]
            assert f.n == len(stars) == 33
            assert f.ratio_median == pytest.approx(FLUX_FACTOR, rel=1e-6)
            assert f.ratio_sigma == pytest.approx(0.0, abs=1e-6)
            lp = runs.lp_flux[c.brick][b][stars].astype(np.float32)  # as the catalogue holds it
            lite = lp * np.float32(FLUX_FACTOR)
            pulls = (lite.astype(np.float64) - lp) / math.sqrt(2.0)
            assert f.pull_median == pytest.approx(float(np.median(pulls)), rel=1e-9)


def test_positions_and_types(compared: Comparison) -> None:
    """Dec offset +0.1″, RA 0, no scatter; 5 of 47 types differ, all PSF → REX."""
    c = compared.result.combined
    assert c.offset_dec_median == pytest.approx(DEC_SHIFT_ARCSEC, abs=1e-6)
    assert c.offset_ra_median == pytest.approx(0.0, abs=1e-6)
    assert c.offset_dec_sigma == pytest.approx(0.0, abs=1e-6)
    assert c.type_agreement == pytest.approx(84 / 94)
    assert c.type_confusion == {"PSF": {"PSF": 74, "REX": 10}, "REX": {"REX": 10}}


def test_maskbits_agreement_counts_the_differing_pixels(compared: Comparison) -> None:
    """BRIGHT: 100 px each, 90 shared, 20 differ of 10⁴; SATUR_G: 7 in lite only; SATUR_R unset."""
    for c in compared.result.bricks:
        assert c.maskbits == [
            MaskbitAgreement("BRIGHT", BRIGHT, 10_000, 100, 100, 90),
            MaskbitAgreement("SATUR_G", SATUR_G, 10_000, 7, 0, 0),
        ]
        bright, satur = c.maskbits
        assert bright.agree == pytest.approx(1 - 20 / 10_000)
        assert bright.overlap == pytest.approx(90 / 110)
        assert satur.agree == pytest.approx(1 - 7 / 10_000)
        assert satur.overlap == 0.0
    combined = compared.result.combined
    assert combined.maskbits_pixels == 20_000
    assert combined.maskbits[0] == MaskbitAgreement("BRIGHT", BRIGHT, 20_000, 200, 200, 180)


def test_depth_ratio_over_pixels_where_both_are_positive(compared: Comparison) -> None:
    """g 0.9 over 9900 pixels, r 1.1 over 9900, z 1; all bricks the same to 1e-4 dex."""
    for c in compared.result.bricks:
        assert c.depth_ratio["g"] == pytest.approx(0.9)
        assert c.depth_ratio["r"] == pytest.approx(1.1)
        assert c.depth_ratio["z"] == pytest.approx(1.0)
        assert c.depth_pixels == {"g": 9900, "r": 9900, "z": 10_000}
    combined = compared.result.combined
    assert combined.depth_ratio["g"] == pytest.approx(0.9, rel=3e-4)
    assert combined.depth_pixels["g"] == 19_800


def test_cost_from_the_ledger_where_there_is_one(compared: Comparison) -> None:
    """lite's ledger gives each brick's wall time and memory; legacypipe's run has none."""
    by_brick = {c.brick: c for c in compared.result.bricks}
    assert by_brick[BRICKS[0]].cost["lite"].wall_s == 12.5
    assert by_brick[BRICKS[1]].cost["lite"].peak_mem_mb == 450.0
    assert "legacypipe" not in by_brick[BRICKS[0]].cost
    total = compared.result.combined.cost["lite"]
    assert (total.wall_s, total.peak_mem_mb) == (20.0, 450.0)


def test_flux_against_the_truth_per_engine(compared: Comparison) -> None:
    """legacypipe's fluxes are the truth (1.0, 40 stars a brick), lite's 1.05 (38 stars)."""
    for c in compared.result.bricks:
        lp, lite = c.truth["legacypipe"], c.truth["lite"]
        for b in BANDS:
            assert lp.flux_over_truth[b] == pytest.approx(1.0, abs=1e-6)
            assert lite.flux_over_truth[b] == pytest.approx(FLUX_FACTOR, rel=1e-6)
            assert (lp.n_flux_stars[b], lite.n_flux_stars[b]) == (40, 38)
    assert compared.result.combined.truth["lite"].n_flux_stars["g"] == 76


def test_json_report_and_plots(runs: Runs, compared: Comparison, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """compare.json is strict JSON of the same numbers; the report names the worst metrics."""
    report = tmp_path / "docs" / "engines.md"
    written = write_comparison(compared, tmp_path / "out", report)
    data = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert data["combined"]["n_matched"] == 94
    assert data["combined"]["maskbits"][0]["n_differ"] == 40
    assert {p.name for p in written[2:]} == {"flux-ratio.png", "offsets.png", "maskbits.png"}
    text = report.read_text()
    worst = text.split("## Where they differ most")[1].split("##")[0].strip().splitlines()
    # A 5 % flux offset on S/N 100–1000 stars is many σ: the widest band's pull σ comes first.
    stars = [i for i in STARS if i not in DROPPED and i not in RETYPED]
    sigma = {}
    for b in BANDS:
        lp = np.concatenate([runs.lp_flux[k][b][stars] for k in BRICKS]).astype(np.float32)
        pull = ((lp * np.float32(FLUX_FACTOR)).astype(np.float64) - lp) / math.sqrt(2.0)
        sigma[b] = 1.4826 * float(np.median(np.abs(pull - np.median(pull))))
    band = max(sigma, key=lambda k: sigma[k])
    assert f"{band} flux difference is {sigma[band]:.2f}σ of the quoted errors" in worst[0]
    # SATUR_G shares no pixel (overlap 0: 10 tolerances) and is among the worst.
    assert any("SATUR_G: 14 pixels in lite, 0 in legacypipe, 0 in both" in w for w in worst)
    assert "| **all** | g | 66 | 1.0500 | 0.0000 |" in text
    assert "| **all** | 98 | 100 | 94 |" in text
    assert "](../out/flux-ratio.png)" in text


def test_a_missing_depth_map_is_a_note_not_an_error(runs: Runs, tmp_path: Path) -> None:
    """lite without its z depth map: z is left out of the depth numbers, with a note."""
    import shutil

    lite = tmp_path / "lite"
    shutil.copytree(runs.lite, lite)
    path = ReleaseLayout(lite).coadd(BRICKS[0], "depth", "z")
    path.unlink()
    c = compare_runs(lite, runs.legacypipe, [BRICKS[0]]).result.bricks[0]
    assert set(c.depth_ratio) == {"g", "r"}
    assert f"lite: no z depth map ({path.relative_to(lite)})" in c.notes


LSDR = [sys.executable, "-m", "lsdr"]


def lsdr(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``lsdr`` with these arguments."""
    return subprocess.run([*LSDR, *args], capture_output=True, text=True, timeout=120)


def test_cli_compares_and_prints_the_matched_counts(runs: Runs, tmp_path: Path) -> None:
    """``lsdr compare LITE LP --bricks B`` prints that brick's counts and writes the report."""
    done = lsdr(
        "compare", str(runs.lite), str(runs.legacypipe), "--bricks", BRICKS[0],
        "--out", str(tmp_path / "out"), "--no-truth",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{BRICKS[0]}: lite 49, legacypipe 50, matched 47 sources" in done.stdout
    assert (tmp_path / "out" / "compare.md").is_file()


def test_cli_names_a_missing_or_unreadable_catalogue(runs: Runs, tmp_path: Path) -> None:
    """Exit 2 and one line naming the file: a brick lite lacks, then a truncated catalogue."""
    import shutil

    done = lsdr("compare", str(runs.lite), str(runs.legacypipe), "--bricks", "1807p327")
    assert done.returncode == 2
    missing = ReleaseLayout(runs.lite).tractor("1807p327")
    assert done.stderr.strip() == (
        f"lsdr: error: {missing}: no lite catalogue of brick 1807p327 (run it with --engine lite)"
    )
    lite = tmp_path / "lite"
    shutil.copytree(runs.lite, lite)
    path = ReleaseLayout(lite).tractor(BRICKS[0])
    path.write_bytes(path.read_bytes()[:4000])
    done = lsdr("compare", str(lite), str(runs.legacypipe), "--bricks", BRICKS[0])
    assert done.returncode == 2
    assert done.stderr.startswith(f"lsdr: error: {path}: ")
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--bricks", "nope"], "'nope' is not a brick name"),
        (["--truth", "/nonexistent/truth.fits"], "--truth /nonexistent/truth.fits: no such file"),
    ],
)
def test_cli_bad_requests_exit_2(runs: Runs, args: list[str], says: str) -> None:
    """A bad brick name or truth path stops before anything is read."""
    done = lsdr("compare", str(runs.lite), str(runs.legacypipe), *args)
    assert done.returncode == 2
    assert says in done.stderr


def test_bricks_only_one_run_catalogued_are_named(runs: Runs, tmp_path: Path) -> None:
    """A brick only lite has is left out of the default selection, with a note saying so."""
    import shutil

    lite = tmp_path / "lite"
    shutil.copytree(runs.lite, lite)
    extra = ReleaseLayout(lite).tractor("1807p327")
    extra.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ReleaseLayout(lite).tractor(BRICKS[0]), extra)
    result = compare_runs(lite, runs.legacypipe).result
    assert sorted(b.brick for b in result.bricks) == sorted(BRICKS)
    assert result.combined.notes == ["only lite catalogued, not compared: 1807p327"]


def test_cli_without_common_bricks_exits_2(runs: Runs, tmp_path: Path) -> None:
    """Two runs with no brick catalogued in both: exit 2, saying so."""
    (tmp_path / "empty").mkdir()
    done = lsdr("compare", str(runs.lite), str(tmp_path / "empty"))
    assert done.returncode == 2
    assert "no brick has a tractor catalogue in both" in done.stderr


@pytest.mark.slow
def test_flow_publishes_the_report_as_a_markdown_artifact(
    prefect_api: str, runs: Runs, tmp_path: Path
) -> None:
    """The ``compare`` flow writes the report and shows it (and each plot) in its flow run."""
    from flow_artifacts import flow_run_artifacts

    from lsdr.flows.compare import ARTIFACT_KEY, compare

    state = compare(
        str(runs.lite), str(runs.legacypipe), out=str(tmp_path / "out"), return_state=True
    )
    result = state.result()
    assert (result.n_lite, result.n_legacypipe, result.n_matched) == (98, 100, 94)
    assert Path(result.report).read_text().startswith("# lite against legacypipe")
    found = {a.key: a for a in flow_run_artifacts(state.state_details.flow_run_id)}
    assert found[ARTIFACT_KEY].type == "markdown"
    assert "| **all** | 98 | 100 | 94 |" in str(found[ARTIFACT_KEY].data)
    assert {"compare-flux-ratio", "compare-offsets", "compare-maskbits"} <= set(found)


def test_maskbits_are_compared_by_name_with_each_maps_own_values() -> None:
    """A dr10 map (SATUR_G = 4) and a dr11-style one (SATUR_G = 2048) with the same pixels agree."""
    from lsdr.survey.compare.metrics import maskbit_agreement

    lite = np.zeros((10, 10), np.int32)
    lp = np.zeros((10, 10), np.int32)
    lite[2, :5] = 4
    lp[2, :5] = 2048
    lp[7, 7] = 1  # NPRIMARY, a bit lite's table does not name: unset in lite
    found = maskbit_agreement(lite, lp, {"SATUR_G": 4}, {"SATUR_G": 2048, "NPRIMARY": 1})
    assert found["SATUR_G"] == MaskbitAgreement("SATUR_G", 2048, 100, 5, 5, 5)
    assert found["SATUR_G"].agree == 1.0
    assert found["NPRIMARY"] == MaskbitAgreement("NPRIMARY", 1, 100, 0, 1, 0)


def test_a_run_against_itself_differs_nowhere(runs: Runs, tmp_path: Path) -> None:
    """The same directory as both engines: every metric perfect, the report says so."""
    comparison = compare_runs(runs.legacypipe, runs.legacypipe)
    c = comparison.result.combined
    assert (c.n_matched, c.matched_of_lite, c.type_agreement) == (100, 1.0, 1.0)
    assert all(r == 1.0 for r in c.depth_ratio.values())
    assert all(f.ratio_median == 1.0 and f.pull_sigma == 0.0 for f in c.flux.values())
    write_comparison(comparison, tmp_path)
    assert "Nowhere: every metric agrees exactly." in (tmp_path / "compare.md").read_text()
