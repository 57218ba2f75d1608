"""``lsdr compare`` on a real brick run with both engines (legacypipe's mzlsbass2 test case).

The matched counts and a band's point-source flux ratio in the report are checked against a
brute-force match written here: every separation of every pair, computed with the haversine
formula, not with the k-d tree of ``validate.match_radec``.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import fitsio
import numpy as np
import pytest
from required_in_ci import legacypipe_test_case

from lsdr.infra.legacypipe_build import LegacypipeBuild

LSDR = [sys.executable, "-m", "lsdr"]
BRICK = "1773p595"
ZOOM = ["1300", "1500", "700", "900"]
RADIUS_ARCSEC = 0.5


def counted(path: Path) -> np.ndarray:
    """The rows compared: brick_primary, not DUP, with flux_ivar > 0 in some band."""
    cat = fitsio.read(str(path), ext="CATALOG")
    kind = np.char.strip(cat["type"].astype(str))
    seen = (cat["flux_ivar_g"] > 0) | (cat["flux_ivar_r"] > 0) | (cat["flux_ivar_z"] > 0)
    return cat[cat["brick_primary"] & (kind != "DUP") & seen]


def separation_arcsec(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Great-circle distance (haversine), arcsec."""
    p1, p2 = math.radians(dec1), math.radians(dec2)
    dp, dl = p2 - p1, math.radians(ra2 - ra1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return math.degrees(2 * math.asin(math.sqrt(h))) * 3600


def brute_force_match(lp: np.ndarray, lite: np.ndarray) -> dict[int, int]:
    """legacypipe row → lite row: each takes its nearest within 0.5″, the closest claim wins."""
    claims: dict[int, tuple[float, int]] = {}
    for i, a in enumerate(lp):
        seps = [separation_arcsec(a["ra"], a["dec"], b["ra"], b["dec"]) for b in lite]
        if not seps:
            continue
        j = int(np.argmin(seps))
        if seps[j] <= RADIUS_ARCSEC and (j not in claims or seps[j] < claims[j][0]):
            claims[j] = (seps[j], i)
    return {i: j for j, (_, i) in claims.items()}


@pytest.fixture(scope="module")
def both_runs(tmp_path_factory: pytest.TempPathFactory, legacypipe: LegacypipeBuild) -> Path:
    """The test case's brick and zoom run by ``lsdr runbrick`` with each engine."""
    root = tmp_path_factory.mktemp("compare-engines")
    survey = root / "mzlsbass2"
    shutil.copytree(legacypipe_test_case("mzlsbass2"), survey)
    for engine in ("lite", "legacypipe"):
        done = subprocess.run(
            [*LSDR, "runbrick", "--survey-dir", str(survey), "--outdir", str(root / engine),
             "--brick", BRICK, "--zoom", *ZOOM, "--engine", engine],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    return root


@pytest.mark.slow
@pytest.mark.legacypipe
def test_compare_reports_the_brute_force_matched_counts(both_runs: Path) -> None:
    """The report's source counts and r flux ratio are the brute-force match's."""
    report = both_runs / "report.md"
    done = subprocess.run(
        [*LSDR, "compare", str(both_runs / "lite"), str(both_runs / "legacypipe"),
         "--out", str(both_runs / "out"), "--report", str(report)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    cat = f"tractor/{BRICK[:3]}/tractor-{BRICK}.fits"
    lite, lp = counted(both_runs / "lite" / cat), counted(both_runs / "legacypipe" / cat)
    pairs = brute_force_match(lp, lite)
    assert 0 < len(pairs) <= min(len(lite), len(lp))
    assert f"{BRICK}: lite {len(lite)}, legacypipe {len(lp)}, matched {len(pairs)} sources" in (
        done.stdout
    )
    text = report.read_text()
    assert f"| {BRICK} | {len(lite)} | {len(lp)} | {len(pairs)} |" in text
    # r flux of point sources (PSF in both, legacypipe S/N > 20): the median ratio.
    ratios = [
        lite[j]["flux_r"] / lp[i]["flux_r"]
        for i, j in pairs.items()
        if lp[i]["type"].strip() == lite[j]["type"].strip() == "PSF"
        and lp[i]["flux_r"] * math.sqrt(lp[i]["flux_ivar_r"]) > 20
        and lite[j]["flux_ivar_r"] > 0
    ]
    assert ratios, "no point source bright in r in both catalogues"
    row = f"| {BRICK} | r | {len(ratios)} | {float(np.median(ratios)):.4f} |"
    assert row in text
    assert "## Where they differ most" in text
    assert (both_runs / "out" / "compare.json").is_file()
