"""Lite runbrick fitting on synthetic tims: fluxes, ivars, positions, types (runbrick/fit.py).

The scene helper draws stars with the pixel-integrated Moffat of ``psfex.moffat_stamp`` and round
exponential galaxies with the simulator's ``render.add_galaxy`` (pixelised Sérsic convolved with
the PSF) — code independent of the Fourier renderer the fit uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from lsdr.survey.core.tan import TanWcs
from lsdr.survey.pretractor.psfex import (
    PsfModel,
    moffat_alpha,
    moffat_stamp,
    psf_from_moffat,
    stamp_half_size,
)
from lsdr.survey.runbrick.detect import detect_sources
from lsdr.survey.runbrick.fit import fit_sources, model_images, select_model
from lsdr.survey.runbrick.photometry import forced_photometry
from lsdr.survey.runbrick.types import BrickGeometry, Source, Tim
from lsdr.survey.simulate.render import Moffat, add_galaxy

BETA = 3.0
SIG1 = 0.01


@dataclass
class Truth:
    """One drawn source."""

    ra: float
    dec: float
    type: str
    flux: dict[str, float]
    r_e: float = 0.0


def point_sn(flux: float, fwhm: float, sig1: float, ntim: int) -> float:
    """S/N of a point source of ``flux`` on ``ntim`` tims of noise ``sig1``."""
    alpha = moffat_alpha(fwhm, BETA)
    p = moffat_stamp(alpha, BETA, stamp_half_size(fwhm))
    return flux * math.sqrt(float(np.sum(p**2)) * ntim) / sig1


def make_scene(
    seed: int,
    *,
    truth_spec: list[tuple[str, float, float]],
    bands: tuple[str, ...] = ("g", "r"),
    ntim: int = 3,
    size: int = 300,
    min_sep: float = 7.0,
    positions: list[tuple[float, float]] | None = None,
    fwhm_range: tuple[float, float] = (3.5, 5.0),
    analytic_psf: bool = True,
    shapes: list[tuple[int, float, float]] | None = None,
) -> tuple[BrickGeometry, list[Tim], list[Truth]]:
    """A small brick, ``ntim`` tims per band and the truth: (type, r-band flux, r_e) per source.

    Tims differ in pointing, rotation (≤ 0.5°), pixel scale (±1 %), seeing (FWHM in
    ``fwhm_range`` pixels) and carry a masked bad column; other bands get the r flux times a
    fixed colour.  The PSF model is lsdr's Moffat calib (``analytic_psf``) or a bare pixelised
    stamp (as a PsfEx file gives).  ``shapes`` gives each galaxy's Sérsic index and (e1, e2)
    (default: round exponentials).
    """
    rng = np.random.default_rng(seed)
    geom = BrickGeometry.for_brick("1867p255", width=size, height=size)
    bw = geom.wcs()
    # Positions with a minimum separation, away from the edges.
    xy: list[tuple[float, float]] = list(positions or [])
    while len(xy) < len(truth_spec):
        x, y = rng.uniform(15, size - 16, 2)
        if all(math.hypot(x - a, y - b) * geom.pixscale > min_sep for a, b in xy):
            xy.append((float(x), float(y)))
    colours = {"g": 0.8, "r": 1.0, "z": 1.3}
    truth: list[Truth] = []
    for (kind, flux, r_e), (x, y) in zip(truth_spec, xy, strict=True):
        ra, dec = bw.pixel_to_radec(x + 1.0, y + 1.0)
        fl = {b: flux * colours[b] for b in bands}
        truth.append(Truth(float(ra), float(dec), kind, fl, r_e))
    tims: list[Tim] = []
    for band in bands:
        for k in range(ntim):
            fwhm = float(rng.uniform(*fwhm_range))
            alpha = moffat_alpha(fwhm, BETA)
            half = stamp_half_size(fwhm)
            kernel = moffat_stamp(alpha, BETA, half)
            if analytic_psf:
                psf = psf_from_moffat(alpha, BETA, half)
            else:
                psf = PsfModel(bases=kernel.astype(np.float32)[None], fwhm=fwhm)
            w = h = size + 40
            x0, y0 = 100 * k + 7, 60 * k + 3
            theta = math.radians(rng.uniform(-0.5, 0.5))
            p = geom.pixscale * (1 + 0.01 * (k - 1)) / 3600.0
            wcs = TanWcs(
                crval1=geom.ra + rng.uniform(-3, 3) / 3600.0,
                crval2=geom.dec + rng.uniform(-3, 3) / 3600.0,
                crpix1=x0 + w / 2.0 + 0.5,
                crpix2=y0 + h / 2.0 + 0.5,
                cd1_1=-p * math.cos(theta),
                cd1_2=p * math.sin(theta),
                cd2_1=p * math.sin(theta),
                cd2_2=p * math.cos(theta),
            )
            image = np.zeros((h, w), np.float32)
            cd_arcsec = np.array([[wcs.cd1_1, wcs.cd1_2], [wcs.cd2_1, wcs.cd2_2]]) * 3600.0
            for it, t in enumerate(truth):
                cx, cy = wcs.radec_to_pixel(t.ra, t.dec)
                tx, ty = float(cx) - 1 - x0, float(cy) - 1 - y0
                f = t.flux[band]
                if t.type == "PSF":
                    ix, iy = round(tx), round(ty)
                    stamp = f * moffat_stamp(alpha, BETA, half, tx - ix, ty - iy)
                    _paste(image, stamp, ix, iy, half)
                else:
                    n_s, e1, e2 = shapes[it] if shapes else (1, 0.0, 0.0)
                    add_galaxy(
                        image, tx, ty, f, n_s, t.r_e, e1, e2, cd_arcsec, Moffat(fwhm, BETA), kernel
                    )
            image += rng.normal(0, SIG1, image.shape).astype(np.float32)
            invvar = np.full((h, w), 1 / SIG1**2, np.float32)
            dq = np.zeros((h, w), np.int16)
            col = int(rng.integers(40, w - 40))
            invvar[:, col] = 0
            dq[:, col] = 1
            image[:, col] = 0
            tims.append(
                Tim(
                    name=f"decam {1000 + k}-N{k}",
                    camera="decam",
                    expnum=1000 + k,
                    ccdname=f"N{k}",
                    band=band,
                    mjd_obs=57000.0 + k,
                    image=image,
                    invvar=invvar,
                    dq=dq,
                    x0=x0,
                    y0=y0,
                    wcs=wcs,
                    psf=psf,
                    psf_fwhm=fwhm,
                    sig1=SIG1,
                    psfnorm=float(np.sqrt(np.sum(kernel**2))),
                    galnorm=0.0,
                )
            )
    return geom, tims, truth


def _paste(image: np.ndarray, stamp: np.ndarray, cx: int, cy: int, half: int) -> None:
    """Add a (2·half+1)² stamp centred on pixel (cx, cy), clipped at the edges."""
    h, w = image.shape
    x0, y0 = cx - half, cy - half
    sx0, sy0 = max(-x0, 0), max(-y0, 0)
    sx1 = min(stamp.shape[1], w - x0)
    sy1 = min(stamp.shape[0], h - y0)
    image[y0 + sy0 : y0 + sy1, x0 + sx0 : x0 + sx1] += stamp[sy0:sy1, sx0:sx1]


def match(
    found: list[Source], truth: list[Truth], radius: float = 1.0
) -> list[tuple[Truth, Source]]:
    """Nearest found source within ``radius`` arcsec of each truth source."""
    out = []
    for t in truth:
        best, dbest = None, radius
        for s in found:
            d = 3600 * math.hypot((s.ra - t.ra) * math.cos(math.radians(t.dec)), s.dec - t.dec)
            if d < dbest:
                best, dbest = s, d
        if best is not None:
            out.append((t, best))
    return out


def run(geom: BrickGeometry, tims: list[Tim], bands: tuple[str, ...]) -> list[Source]:
    """Detect and fit."""
    sources, _, blobs = detect_sources(tims, geom, bands)
    return fit_sources(sources, blobs, tims, geom, bands)


@pytest.fixture(scope="module")
def star_field() -> tuple[list[Truth], list[Source]]:
    """Stars with r-band S/N 20–400 on 3 tims per band (g, r)."""
    rng = np.random.default_rng(5)
    unit = point_sn(1.0, 4.2, SIG1, 3)
    sn = np.exp(rng.uniform(math.log(20), math.log(400), 100))
    spec = [("PSF", float(s / unit), 0.0) for s in sn]
    geom, tims, truth = make_scene(11, truth_spec=spec, size=560, min_sep=8.0, analytic_psf=False)
    return truth, run(geom, tims, ("g", "r"))


def test_star_fluxes_unbiased_and_ivar_consistent(star_field) -> None:
    """Star fluxes at S/N > 20 are unbiased to 2 % and scatter as their flux_ivar says."""
    truth, found = star_field
    pairs = match(found, truth)
    assert len(pairs) >= 0.95 * len(truth)
    for band in ("g", "r"):
        ratio = np.array([s.flux[band] / t.flux[band] for t, s in pairs])
        chi = np.array(
            [(s.flux[band] - t.flux[band]) * math.sqrt(s.flux_ivar[band]) for t, s in pairs]
        )
        assert abs(np.median(ratio) - 1) < 0.02, np.median(ratio)
        assert abs(np.mean(ratio) - 1) < 0.02
        assert 0.8 < float(np.std(chi)) < 1.3, np.std(chi)


def test_star_positions_and_types(star_field) -> None:
    """Stars at S/N > 50 land within 0.05″ (rms) and are typed PSF."""
    truth, found = star_field
    pairs = match(found, truth)
    bright = [(t, s) for t, s in pairs if s.flux["r"] * math.sqrt(s.flux_ivar["r"]) > 50]
    assert len(bright) > 20
    d = np.array(
        [
            3600 * math.hypot((s.ra - t.ra) * math.cos(math.radians(t.dec)), s.dec - t.dec)
            for t, s in bright
        ]
    )
    assert math.sqrt(np.mean(d**2)) < 0.05, d
    assert sum(s.type == "PSF" for _, s in bright) >= 0.9 * len(bright)
    for _, s in bright:
        assert s.nobs["r"] in (2, 3) and s.nobs["g"] in (2, 3)
        assert 0.0 <= s.fracmasked["r"] < 0.5
        assert s.fracin["r"] > 0.95
        assert 0.3 < s.rchisq["r"] < 3.0
        assert s.ra_ivar > 0 and s.dec_ivar > 0


def test_undersampled_moffat_psf_fluxes() -> None:
    """With FWHM 1.4–2 pixels (binned demo CCDs) and lsdr's Moffat calib, fluxes are unbiased."""
    rng = np.random.default_rng(8)
    unit = point_sn(1.0, 1.7, SIG1, 3)
    sn = np.exp(rng.uniform(math.log(30), math.log(400), 50))
    spec = [("PSF", float(s / unit), 0.0) for s in sn]
    geom, tims, truth = make_scene(
        12, truth_spec=spec, size=400, min_sep=6.0, fwhm_range=(1.4, 2.0), bands=("r",)
    )
    pairs = match(run(geom, tims, ("r",)), truth)
    assert len(pairs) >= 0.95 * len(truth)
    ratio = np.array([s.flux["r"] / t.flux["r"] for t, s in pairs])
    chi = np.array([(s.flux["r"] - t.flux["r"]) * math.sqrt(s.flux_ivar["r"]) for t, s in pairs])
    assert abs(np.median(ratio) - 1) < 0.01, np.median(ratio)
    assert 0.8 < float(np.std(chi)) < 1.3, np.std(chi)


def test_galaxies_typed_rex() -> None:
    """Round exponentials and stars at S/N > 50 are typed correctly ≥ 90 % of the time."""
    rng = np.random.default_rng(3)
    unit = point_sn(1.0, 4.2, SIG1, 3)
    spec: list[tuple[str, float, float]] = []
    for i in range(40):
        sn = float(np.exp(rng.uniform(math.log(60), math.log(300))))
        if i % 2:
            spec.append(("REX", 1.6 * sn / unit, float(rng.uniform(0.4, 1.5))))
        else:
            spec.append(("PSF", sn / unit, 0.0))
    geom, tims, truth = make_scene(21, truth_spec=spec, size=400, min_sep=9.0)
    found = run(geom, tims, ("g", "r"))
    pairs = match(found, truth)
    assert len(pairs) >= 0.95 * len(truth)
    correct = sum(t.type == s.type for t, s in pairs)
    assert correct >= 0.9 * len(pairs), [(t.type, s.type, t.r_e, s.shape_r) for t, s in pairs]
    gal = [(t, s) for t, s in pairs if t.type == "REX" and s.type == "REX"]
    r_ratio = np.array([s.shape_r / t.r_e for t, s in gal])
    assert abs(np.median(r_ratio) - 1) < 0.1, r_ratio
    f_ratio = np.array([s.flux["r"] / t.flux["r"] for t, s in gal])
    assert abs(np.median(f_ratio) - 1) < 0.05, f_ratio


def test_model_images_leave_noise(star_field) -> None:
    """model_images of a fitted scene leave residuals consistent with the noise."""
    spec = [("PSF", 3.0, 0.0), ("REX", 5.0, 0.8), ("PSF", 1.0, 0.0)]
    geom, tims, _ = make_scene(4, truth_spec=spec, size=200)
    found = run(geom, tims, ("g", "r"))
    assert len(found) == 3
    models = model_images(found, tims)
    for tim, model in zip(tims, models, strict=True):
        assert model.shape == tim.image.shape and model.dtype == np.float32
        good = tim.invvar > 0
        chi2 = float(np.mean((tim.image - model)[good] ** 2 * tim.invvar[good]))
        assert 0.9 < chi2 < 1.1, chi2


def test_forced_photometry_fixed_positions() -> None:
    """Forced photometry at the true positions recovers two blended stars' fluxes jointly."""
    spec = [("PSF", 2.0, 0.0), ("PSF", 1.0, 0.0)]
    pos = [(60.0, 60.0), (63.5, 61.0)]  # 0.95″ apart
    _geom, tims, truth = make_scene(8, truth_spec=spec, size=120, positions=pos)
    srcs = [Source(ra=t.ra, dec=t.dec, type="PSF") for t in truth]
    forced_photometry(srcs, tims, ("g", "r"))
    for t, s in zip(truth, srcs, strict=True):
        err = 1 / math.sqrt(s.flux_ivar["r"])
        assert abs(s.flux["r"] - t.flux["r"]) < 5 * err * 3  # blending inflates the error
        assert s.nobs["r"] >= 2
    assert srcs[0].fracflux["r"] > 0.2 and srcs[1].fracflux["r"] > 0.8


def test_source_poisson_noise_in_invvar_keeps_bright_star_errors_honest() -> None:
    """Bright stars' flux errors are honest only with their Poisson noise in the invvar.

    ``tims.with_source_noise`` (legacypipe's remap for Mosaic/90Prime) gives errors that match
    the scatter; sky-only weights underestimate them.
    """
    import dataclasses

    from lsdr.survey.runbrick.tims import with_source_noise
    from lsdr.survey.simulate.validate import robust_sigma

    rng = np.random.default_rng(3)
    unit = point_sn(1.0, 4.2, SIG1, 2)
    sn = np.exp(rng.uniform(math.log(100), math.log(1000), 60))
    spec = [("PSF", float(s / unit), 0.0) for s in sn]
    _geom, tims, truth = make_scene(4, truth_spec=spec, bands=("r",), ntim=2, size=420)
    stars = [Source(ra=t.ra, dec=t.dec, type="PSF", flux=dict(t.flux)) for t in truth]
    exptime = 1000.0  # electrons per nanomaggy-second: shot noise ≫ sky at the stars' peaks
    noisy = []
    for tim, model in zip(tims, model_images(stars, tims), strict=True):
        shot = rng.normal(size=model.shape) * np.sqrt(np.maximum(model, 0.0) / exptime)
        noisy.append(dataclasses.replace(tim, image=(tim.image + shot).astype(np.float32)))
    sigma = {}
    for label, weights in (
        ("sky only", noisy),
        (
            "with sources",
            [
                dataclasses.replace(t, invvar=with_source_noise(t.invvar, t.image, exptime))
                for t in noisy
            ],
        ),
    ):
        srcs = [Source(ra=t.ra, dec=t.dec, type="PSF") for t in truth]
        forced_photometry(srcs, weights, ("r",))
        resid = [
            (s.flux["r"] - t.flux["r"]) * math.sqrt(s.flux_ivar["r"])
            for t, s in zip(truth, srcs, strict=True)
        ]
        sigma[label] = robust_sigma(resid)
    # (Weights from the noisy data, as legacypipe's, bias fluxes low by ~n_eff/electrons: about
    # 1σ at these deliberately low counts, < 0.1σ for the demo's bright stars; σ is centred.)
    assert sigma["sky only"] > 1.5, sigma
    assert 0.8 <= sigma["with sources"] <= 1.25, sigma


def test_select_model_rule() -> None:
    """The model choice follows legacypipe: cut 25, REX needs a 1 % better Δχ²."""
    assert select_model({"PSF": 20.0, "REX": 22.0}) == ""
    assert select_model({"PSF": 1000.0, "REX": 1005.0}) == "PSF"
    assert select_model({"PSF": 1000.0, "REX": 1011.5}) == "REX"
    assert select_model({"PSF": 1000.0}) == "PSF"


def test_deterministic() -> None:
    """The same tims give the same catalogue."""
    spec = [("PSF", 1.0, 0.0), ("REX", 2.0, 0.7)]
    a = run(*make_scene(9, truth_spec=spec, size=150)[:2], ("g", "r"))
    b = run(*make_scene(9, truth_spec=spec, size=150)[:2], ("g", "r"))
    assert [(s.ra, s.dec, s.type, s.flux) for s in a] == [(s.ra, s.dec, s.type, s.flux) for s in b]


def _catalogue(sources: list[Source]) -> list[tuple]:
    return [(s.blob, s.ra, s.dec, s.type, s.shape_r, sorted(s.flux.items())) for s in sources]


def test_fitblobs_checkpoint_resume_bailout_threads(tmp_path) -> None:
    """fitblobs refits only blobs missing from the checkpoint, bails out, and is thread-safe."""
    from lsdr.survey.runbrick.detect import stage_srcs
    from lsdr.survey.runbrick.fit import stage_fitblobs
    from lsdr.survey.runbrick.options import RunbrickOptions
    from lsdr.survey.runbrick.stages import write_checkpoint

    spec = [("PSF", 2.0, 0.0), ("REX", 3.0, 0.6), ("PSF", 0.5, 0.0), ("PSF", 1.0, 0.0)] * 2
    geom, tims, _ = make_scene(13, truth_spec=spec, size=260)
    bands = ("g", "r")

    def srcs() -> dict:
        return stage_srcs(tims=tims, geom=geom, bands=bands)

    ckpt = tmp_path / "checkpoint.pickle"
    first = srcs()
    full = stage_fitblobs(
        tims=tims,
        geom=geom,
        bands=bands,
        sources=first["sources"],
        blobs=first["blobs"],
        options=RunbrickOptions(checkpoint=str(ckpt), checkpoint_period=0.0),
    )
    blobs = first["blobs"]
    assert len(blobs) >= 6 and ckpt.exists()
    assert full["fit_stats"]["blobs_fitted"] == len(blobs)
    assert len(full["model_images"]) == len(tims)
    reference = _catalogue(full["sources"])

    # A "killed" run saved only the first half of the blobs.
    by_blob: dict[int, list[Source]] = {}
    for s in full["sources"]:
        by_blob.setdefault(s.blob, []).append(s)
    half = blobs[: len(blobs) // 2]
    write_checkpoint(
        ckpt,
        geom.brickname,
        {b.blob_id: ((b.x0, b.x1, b.y0, b.y1), by_blob.get(b.blob_id, [])) for b in half},
    )
    again = srcs()
    resumed = stage_fitblobs(
        tims=tims,
        geom=geom,
        bands=bands,
        sources=again["sources"],
        blobs=again["blobs"],
        options=RunbrickOptions(checkpoint=str(ckpt), checkpoint_period=0.0),
    )
    assert resumed["fit_stats"]["blobs_resumed"] == len(half)
    assert resumed["fit_stats"]["blobs_fitted"] == len(blobs) - len(half)
    assert _catalogue(resumed["sources"]) == reference

    write_checkpoint(
        ckpt,
        geom.brickname,
        {b.blob_id: ((b.x0, b.x1, b.y0, b.y1), by_blob.get(b.blob_id, [])) for b in half},
    )
    again = srcs()
    bailed = stage_fitblobs(
        tims=tims,
        geom=geom,
        bands=bands,
        sources=again["sources"],
        blobs=again["blobs"],
        options=RunbrickOptions(checkpoint=str(ckpt), bail_out=True),
    )
    assert bailed["fit_stats"]["blobs_fitted"] == 0
    assert bailed["fit_stats"]["blobs_bailed"] == len(blobs) - len(half)
    kept_blobs = {b.blob_id for b in half}
    assert all(s.blob in kept_blobs for s in bailed["sources"])
    mask = bailed["bailout_mask"]
    for b in blobs:
        assert mask[b.slices][b.mask].all() == (b.blob_id not in kept_blobs)

    again = srcs()
    threaded = stage_fitblobs(
        tims=tims,
        geom=geom,
        bands=bands,
        sources=again["sources"],
        blobs=again["blobs"],
        options=RunbrickOptions(threads=2),
    )
    assert _catalogue(threaded["sources"]) == reference
