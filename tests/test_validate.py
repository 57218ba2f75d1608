"""Validation against the truth: matching, masks, metrics on synthetic arrays; one real brick."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.runbrick import tractorschema as ts
from lsdr.survey.simulate.truth import TRUTH_DTYPE
from lsdr.survey.simulate.validate import (
    BrickMatch,
    ValidationMetrics,
    combine,
    completeness_curve,
    compute_metrics,
    match_radec,
    plot_completeness,
    plot_flux_residuals,
    propagate_truth,
    robust_sigma,
    validation_area,
)

BANDS = ("g", "r", "z")


def synthetic_match(
    n: int = 4000,
    *,
    bias: float = 0.0,
    noise_scale: float = 1.0,
    astro_sigma: float = 0.01,
    mistype: float = 0.0,
    seed: int = 3,
) -> BrickMatch:
    """Truth stars and galaxies with 'measured' fluxes drawn from the reported ivar.

    Depth is 24 mag (5σ) everywhere; detection probability is a step at 0.2 mag brighter than
    it; the measured flux is (1 + bias)·true + noise_scale·N(0, 1/√ivar).
    """
    rng = np.random.default_rng(seed)
    is_psf = rng.random(n) < 0.5
    mag = rng.uniform(17.0, 25.0, n)
    flux = 10 ** (-0.4 * (mag - 22.5))
    depth_mag = np.full(n, 24.0)
    sigma = 10 ** (-0.4 * (24.0 - 22.5)) / 5.0  # 1σ flux error at the 5σ depth
    ivar = np.full(n, 1.0 / sigma**2)
    matched = mag < 24.0 - 0.2
    meas = {
        b: np.where(matched, (1 + bias) * flux + noise_scale * sigma * rng.normal(size=n), np.nan)
        for b in BANDS
    }
    cat_type = np.where(is_psf, b"PSF", b"REX").astype("S3")
    flip = rng.random(n) < mistype
    cat_type[flip] = np.where(is_psf[flip], b"REX", b"PSF")
    cat_type[~matched] = b""
    return BrickMatch(
        brick="test",
        bands=BANDS,
        true_type=np.where(is_psf, b"PSF", b"EXP").astype("S3"),
        true_flux=dict.fromkeys(BANDS, flux),
        depth_mag=dict.fromkeys(BANDS, depth_mag),
        matched=matched,
        sep_ra_arcsec=np.where(matched, rng.normal(0, astro_sigma, n), np.nan),
        sep_dec_arcsec=np.where(matched, rng.normal(0, astro_sigma, n), np.nan),
        cat_type=cat_type,
        flux=meas,
        flux_ivar={b: np.where(matched, ivar, np.nan) for b in BANDS},
        is_ref=np.zeros(n, bool),
        n_catalog=int(matched.sum()),
        area_deg2=0.01,
    )


def test_match_is_one_to_one_within_the_radius():
    """Each truth object takes its nearest catalogue source within 1″; a source is used once."""
    d = 1.0 / 3600.0
    ra1 = np.array([10.0, 10.0 + 0.3 * d, 10.0 + 5 * d, 20.0])
    dec1 = np.array([0.0, 0.0, 0.0, 0.0])
    ra2 = np.array([10.0 + 0.1 * d, 10.0 + 5.5 * d, 10.0 + 8 * d])
    dec2 = np.zeros(3)
    idx = match_radec(ra1, dec1, ra2, dec2, radius_arcsec=1.0)
    # truth 0 is closest to source 0, truth 1 loses it; truth 2 → source 1; truth 3 far away.
    assert idx.tolist() == [0, -1, 1, -1]
    assert match_radec(ra1, dec1, ra2[:0], dec2[:0]).tolist() == [-1] * 4


def test_match_radius_scales_with_declination():
    """The radius is on the sky: at Dec 60 an RA step of 1.5″/cos δ is 1.5″ away (no match)."""
    ra_step = 1.5 / 3600.0 / math.cos(math.radians(60.0))
    idx = match_radec([100.0], [60.0], [100.0 + ra_step], [60.0], radius_arcsec=1.0)
    assert idx.tolist() == [-1]
    idx = match_radec([100.0], [60.0], [100.0 + ra_step], [60.0], radius_arcsec=2.0)
    assert idx.tolist() == [0]


def test_robust_sigma_ignores_outliers():
    """The MAD-based σ of a unit Gaussian with 5 % wild outliers stays near 1."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=20000)
    v[:1000] = 1e3
    assert robust_sigma(v) == pytest.approx(1.0, abs=0.1)
    assert np.std(v) > 100
    assert math.isnan(robust_sigma([np.nan]))


def test_validation_area_excludes_masked_and_unobserved_pixels():
    """BRIGHT, MEDIUM, BAILOUT and nexp = 0 pixels are out; NPRIMARY alone is not."""
    bits = ts.maskbits(BANDS, "dr10")
    mask = np.zeros((4, 4), np.int32)
    mask[0, 0] = bits["BRIGHT"]
    mask[0, 1] = bits["MEDIUM"]
    mask[0, 2] = bits["BAILOUT"]
    mask[0, 3] = bits["NPRIMARY"]
    nexp = [np.ones((4, 4), np.int16) for _ in BANDS]
    nexp[2][3, 3] = 0  # unobserved in z only: still in
    for n in nexp:
        n[2, 2] = 0  # unobserved in every band: out
    area = validation_area(mask, nexp, bits)
    assert area[0].tolist() == [False, False, False, True]
    assert area[3, 3] and not area[2, 2] and area.sum() == 16 - 4


def test_proper_motion_moves_truth_to_the_epoch():
    """A 10 mas/yr motion in Dec over 10 years moves a star 0.1″ north."""
    t = np.zeros(1, TRUTH_DTYPE)
    t["ra"], t["dec"], t["pmdec"], t["pmra"], t["ref_epoch"] = 150.0, 30.0, 10.0, 0.0, 2015.5
    ra, dec = propagate_truth(t, 2025.5)
    assert (dec[0] - 30.0) * 3600 == pytest.approx(0.1, rel=1e-6) and ra[0] == 150.0


def test_metrics_pass_for_an_honest_catalogue():
    """Unbiased fluxes with errors as reported, small scatter, right types: every check holds."""
    m = compute_metrics(synthetic_match())
    assert m.checks and m.passed(), m.checks
    for b in BANDS:
        assert abs(m.flux_bias[b]) < 0.005
        assert m.residual_sigma[b] == pytest.approx(1.0, abs=0.1)
        assert m.completeness_limit[b] == 1.0 and m.n_completeness_limit[b] > 100
    assert m.astrometry_arcsec == pytest.approx(0.01, rel=0.15)
    assert m.typing_accuracy == 1.0


# Issue 5's acceptance thresholds as docs/validation.md publishes them (the "threshold" column):
# typed in here, never read from lsdr.survey.simulate.validate.
COMPLETENESS_MIN = 0.90
"""Completeness of point sources at −1.0 ≤ Δm < −0.5: ≥ 0.90."""
FLUX_BIAS_MAX = 0.02
"""|median(flux / true flux) − 1| of stars with S/N > 20: < 2 %."""
RESIDUAL_SIGMA_RANGE = (0.8, 1.3)
"""Normalised flux residual σ of stars with S/N > 20: within 0.8–1.3."""
ASTROMETRY_MAX_ARCSEC = 0.05
"""Astrometric scatter of objects with S/N > 50: < 0.05″."""
TYPING_MIN = 0.90
"""Typing accuracy of objects with S/N > 50: ≥ 90 %."""


def documented_verdicts(m: ValidationMetrics) -> dict[str, bool]:
    """Each acceptance check decided by the documented thresholds from the metrics' values."""
    lo, hi = RESIDUAL_SIGMA_RANGE
    out = {}
    for b in BANDS:
        out[f"completeness_{b}"] = m.completeness_limit[b] >= COMPLETENESS_MIN
        out[f"flux_bias_{b}"] = abs(m.flux_bias[b]) < FLUX_BIAS_MAX
        out[f"residual_sigma_{b}"] = lo <= m.residual_sigma[b] <= hi
    out["astrometry"] = m.astrometry_arcsec < ASTROMETRY_MAX_ARCSEC
    out["typing"] = m.typing_accuracy >= TYPING_MIN
    return out


def missing_stars_in_the_completeness_bin(match: BrickMatch, every: int) -> BrickMatch:
    """The match with every ``every``-th point source of the acceptance bin unmatched.

    The synthetic bands share fluxes and depths, so the bin, and the loss, is every band's.
    """
    dm = ts.flux_to_mag(match.true_flux["r"]) - match.depth_mag["r"]
    in_bin = np.nonzero((match.true_type == b"PSF") & (dm >= -1.0) & (dm < -0.5))[0]
    match.matched[in_bin[::every]] = False
    return match


@pytest.mark.parametrize(
    ("kwargs", "every", "failing"),
    [
        ({}, 0, set()),
        # 1.5 % is within the bias threshold, but far beyond bright stars' errors.
        ({"bias": 0.015}, 0, {"residual_sigma_g", "residual_sigma_r", "residual_sigma_z"}),
        ({"bias": 0.025}, 0, {f"{m}_{b}" for m in ("flux_bias", "residual_sigma") for b in BANDS}),
        ({"noise_scale": 0.75}, 0, {"residual_sigma_g", "residual_sigma_r", "residual_sigma_z"}),
        ({"noise_scale": 1.35}, 0, {"residual_sigma_g", "residual_sigma_z"}),
        ({"astro_sigma": 0.04}, 0, set()),
        ({"astro_sigma": 0.06}, 0, {"astrometry"}),
        ({"mistype": 0.05}, 0, set()),
        ({"mistype": 0.15}, 0, {"typing"}),
        ({}, 20, set()),  # 95 % complete
        ({}, 8, {"completeness_g", "completeness_r", "completeness_z"}),  # 87.5 % complete
    ],
)
def test_each_check_applies_the_documented_threshold(
    kwargs: dict[str, float], every: int, failing: set[str]
):
    """Every pass/fail equals the docs' threshold applied to the metric, on either side of it."""
    match = synthetic_match(**kwargs)
    if every:
        match = missing_stars_in_the_completeness_bin(match, every)
    m = compute_metrics(match)
    assert m.checks == documented_verdicts(m)
    assert {k for k, ok in m.checks.items() if not ok} == failing, m
    assert m.passed() == (not failing)


@pytest.mark.parametrize(
    ("kwargs", "failing"),
    [
        ({"bias": 0.05}, "flux_bias_r"),
        ({"noise_scale": 2.0}, "residual_sigma_g"),
        ({"noise_scale": 0.5}, "residual_sigma_z"),
        ({"astro_sigma": 0.1}, "astrometry"),
        ({"mistype": 0.2}, "typing"),
    ],
)
def test_metrics_fail_when_the_catalogue_is_wrong(kwargs: dict[str, float], failing: str):
    """Bias, under/over-reported errors, astrometric scatter and mistyping each fail a check."""
    m = compute_metrics(synthetic_match(**kwargs))
    assert not m.checks[failing]
    assert not m.passed()


def test_completeness_counts_only_point_sources_in_the_bin():
    """Stars missed 0.5–1 mag above depth bring completeness down; galaxies do not count."""
    match = synthetic_match()
    dm = ts.flux_to_mag(match.true_flux["r"]) - match.depth_mag["r"]
    stars = match.true_type == b"PSF"
    in_bin = np.nonzero(stars & (dm >= -1.0) & (dm < -0.5))[0]
    match.matched[in_bin[::4]] = False  # a quarter of the stars in the bin
    galaxies_gone = ~stars & (dm < -0.5)
    match.matched[galaxies_gone] = False
    m = compute_metrics(match)
    assert m.completeness_limit["r"] == pytest.approx(0.75, abs=0.01)
    assert not m.checks["completeness_r"]
    x, frac, n = completeness_curve(match, "r")
    assert n.sum() == np.sum(stars & (dm >= -6.0))  # the curve starts 6 mag above depth
    assert frac[x > 0.0][n[x > 0.0] > 0].max() == 0.0  # nothing fainter than the step found


def test_combine_concatenates_bricks_and_plots_are_written(tmp_path: Path):
    """Two bricks' matches combine into one sample; both PNGs are written."""
    a, b = synthetic_match(500, seed=1), synthetic_match(700, seed=2)
    both = combine([a, b])
    assert len(both) == 1200 and both.area_deg2 == pytest.approx(0.02)
    comp = plot_completeness(both, tmp_path / "c.png")
    resid = plot_flux_residuals(both, tmp_path / "r.png")
    for p in (comp, resid):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("fwhm", [1.6, 2.6])
@pytest.mark.parametrize("peak_over_threshold", [10.0, 1e3, 1e6])
def test_simulated_star_holds_exactly_its_truth_flux(
    fwhm: float, peak_over_threshold: float
) -> None:
    """The simulator injects a star's whole truth flux, faint or bright (no lost wings)."""
    from lsdr.survey.simulate.render import Moffat, add_star

    psf = Moffat(fwhm, 3.5)
    flux = peak_over_threshold / psf.peak()
    image = np.zeros((701, 701), np.float32)
    add_star(image, 350.3, 349.8, flux, psf, threshold=1.0)
    assert float(image.astype(np.float64).sum()) == pytest.approx(flux, rel=1e-5)


def dense_survey(root: Path) -> ReleaseLayout:
    """The runbrick test survey's region with two passes per band and many more stars."""
    from runbrick_survey import build

    return build(root, passes=2, star_density=40000.0)


@pytest.fixture(scope="module")
def dense_brick_metrics(tmp_path_factory: pytest.TempPathFactory) -> ValidationMetrics:
    """One 800² brick of the dense survey run by the lite runbrick and matched to its truth."""
    from runbrick_survey import BRICK

    from lsdr.survey.runbrick.options import RunbrickOptions
    from lsdr.survey.runbrick.stages import run_brick
    from lsdr.survey.simulate.validate import validate_bricks

    layout = dense_survey(tmp_path_factory.mktemp("dense") / "rel")
    run_brick(layout, BRICK, RunbrickOptions(width=800, height=800, threads=2))
    metrics, _ = validate_bricks(layout, [BRICK], width=800)
    print(metrics)
    return metrics


@pytest.mark.slow
def test_lite_runbrick_meets_the_acceptance_thresholds(dense_brick_metrics: ValidationMetrics):
    """Completeness, flux bias, astrometry and typing meet issue 5's thresholds on a real brick."""
    m = dense_brick_metrics
    assert m.n_truth_psf > 50 and m.n_catalog > 50
    for b in BANDS:
        assert m.n_flux_stars[b] >= 20 and m.n_completeness_limit[b] >= 5
        assert m.completeness_limit[b] >= COMPLETENESS_MIN, (b, m)
        assert abs(m.flux_bias[b]) < FLUX_BIAS_MAX, (b, m)
    assert m.n_astrometry > 20 and m.n_typing > 20
    assert m.astrometry_arcsec < ASTROMETRY_MAX_ARCSEC, m
    assert m.typing_accuracy >= TYPING_MIN, m


@pytest.mark.slow
def test_flux_residuals_are_consistent_with_flux_ivar(dense_brick_metrics: ValidationMetrics):
    """Normalised flux residual σ of stars with S/N > 20 lies within 0.8–1.3 in every band."""
    m = dense_brick_metrics
    lo, hi = RESIDUAL_SIGMA_RANGE
    for b in BANDS:
        assert m.n_flux_stars[b] >= 20
        assert lo <= m.residual_sigma[b] <= hi, (b, m.residual_sigma)
