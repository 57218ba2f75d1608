"""How far lite's products of a brick are from legacypipe's: matched sources, maps, cost.

Sources are matched one to one within 0.5″ (``validate.match_radec``: nearest first, a source
of either catalogue in at most one pair).  Every number is "lite against legacypipe": ratios are
lite / legacypipe, offsets lite − legacypipe.  Per-brick numbers and the all-bricks ones are
the same :class:`BrickComparison`; :class:`EngineComparison` holds them, JSON-serialisable.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.compare.inputs import ENGINES, EngineBrick, EngineCost
from lsdr.survey.simulate.validate import match_radec, robust_sigma

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

MATCH_RADIUS_ARCSEC = 0.5
"""Largest lite–legacypipe separation counted as the same source."""
DETECTION_SN = 10.0
"""legacypipe sources above this total S/N (bands in quadrature) should all be in lite's."""
FLUX_SN = 20.0
"""Point sources above this S/N in a band (legacypipe's) enter that band's flux numbers."""
DEPTH_BIN_DEX = 1e-4
"""Bin width (dex) of the depth-ratio histograms the all-bricks median is taken from."""
DEPTH_RANGE_DEX = 3.0
"""Depth ratios are binned over 10^±3 (outside: the first or last bin)."""


@dataclass
class FluxAgreement:
    """One band's fluxes of matched point sources: lite / legacypipe and lite − legacypipe."""

    n: int
    ratio_median: float
    ratio_sigma: float
    """Robust σ (1.4826 MAD) of lite / legacypipe."""
    pull_median: float
    pull_sigma: float
    """Robust σ of (f_lite − f_lp) / √(σ_lite² + σ_lp²): the difference against quoted errors."""


@dataclass
class MaskbitAgreement:
    """One maskbit on the two maps: pixels set in each, in both, and how often they agree."""

    bit: str
    value: int
    n_pixels: int
    n_lite: int
    n_legacypipe: int
    n_both: int

    @property
    def n_differ(self) -> int:
        """Pixels where the bit is set in one map only."""
        return self.n_lite + self.n_legacypipe - 2 * self.n_both

    @property
    def agree(self) -> float:
        """Fraction of all pixels where the bit is the same in both maps."""
        return 1.0 - self.n_differ / self.n_pixels if self.n_pixels else math.nan

    @property
    def overlap(self) -> float:
        """Pixels set in both over pixels set in either (1: the same pixels; 0: none shared)."""
        either = self.n_lite + self.n_legacypipe - self.n_both
        return self.n_both / either if either else math.nan


@dataclass
class TruthAgreement:
    """One engine against the simulated truth (``validate``'s star flux numbers)."""

    n_truth: int
    n_flux_stars: dict[str, int]
    flux_over_truth: dict[str, float]
    """Median flux / true flux of matched stars with S/N > 20 in the band."""
    residual_sigma: dict[str, float]
    """Robust σ of (flux − true)·√flux_ivar of the same stars."""


@dataclass
class BrickComparison:
    """Every number of one brick (or of all bricks together: ``brick == "all"``)."""

    brick: str
    bands: tuple[str, ...]
    n_lite: int
    n_legacypipe: int
    n_matched: int
    matched_of_lite: float
    matched_of_legacypipe: float
    lite_extra_of_legacypipe: float
    """Unmatched lite sources as a fraction of legacypipe's sources."""
    n_legacypipe_bright: int
    """legacypipe sources with total S/N > 10."""
    bright_matched: float
    """Fraction of those that lite has within 0.5″."""
    flux: dict[str, FluxAgreement]
    n_offsets: int
    offset_ra_median: float
    """Median (RA_lite − RA_lp)·cos δ, arcsec."""
    offset_dec_median: float
    offset_ra_sigma: float
    offset_dec_sigma: float
    type_agreement: float
    type_confusion: dict[str, dict[str, int]]
    """legacypipe type → lite type → matched pairs."""
    maskbits: list[MaskbitAgreement]
    """Bits set in either map, in bit order."""
    maskbits_pixels: int
    depth_ratio: dict[str, float]
    """Median depth_lite / depth_lp over pixels where both are > 0, per band."""
    depth_pixels: dict[str, int]
    cost: dict[str, EngineCost]
    truth: dict[str, TruthAgreement] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class EngineComparison:
    """The comparison of two runs: each brick's numbers and all bricks' together."""

    lite_dir: str
    legacypipe_dir: str
    truth: str | None
    radius_arcsec: float
    bricks: list[BrickComparison]
    combined: BrickComparison

    def to_dict(self) -> dict[str, Any]:
        """Plain types only; NaN (no source qualified) becomes None."""
        data = asdict(self)
        for brick, source in zip(
            [*data["bricks"], data["combined"]], [*self.bricks, self.combined], strict=True
        ):
            for row, bit in zip(brick["maskbits"], source.maskbits, strict=True):
                row.update(agree=bit.agree, overlap=bit.overlap, n_differ=bit.n_differ)
        plain: dict[str, Any] = _plain(data)
        return plain

    def to_json(self) -> str:
        """The comparison as JSON (strict: no NaN)."""
        import json

        return json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"


def _plain(value: Any) -> Any:
    """``value`` with NaN/inf as None, tuples as lists, numpy scalars as Python ones."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- matched sources ---------------------------------------------------------------------------


@dataclass
class MatchedSources:
    """The two catalogues of a brick (or of several) matched: what the metrics are taken from.

    ``lp_sn``/``lp_matched`` are per legacypipe source; the other arrays per matched pair.
    """

    bands: tuple[str, ...]
    n_lite: int
    n_legacypipe: int
    lp_sn: FloatArray
    lp_matched: BoolArray
    d_ra: FloatArray
    d_dec: FloatArray
    type_lite: npt.NDArray[np.str_]
    type_lp: npt.NDArray[np.str_]
    flux_lite: dict[str, FloatArray]
    ivar_lite: dict[str, FloatArray]
    flux_lp: dict[str, FloatArray]
    ivar_lp: dict[str, FloatArray]

    @property
    def n_matched(self) -> int:
        """Matched pairs."""
        return len(self.d_ra)


def total_sn(catalog: npt.NDArray[np.void], bands: Sequence[str]) -> FloatArray:
    """Each source's S/N over the bands in quadrature: √Σ max(f, 0)²·ivar."""
    s = np.zeros(len(catalog))
    for b in bands:
        f = np.clip(np.nan_to_num(catalog[f"flux_{b}"].astype(np.float64)), 0, None)
        iv = np.clip(np.nan_to_num(catalog[f"flux_ivar_{b}"].astype(np.float64)), 0, None)
        s += f**2 * iv
    return np.sqrt(s)


def _types(catalog: npt.NDArray[np.void]) -> npt.NDArray[np.str_]:
    return np.char.strip(np.asarray(catalog["type"]).astype("U3"))


def match_catalogs(
    lite: npt.NDArray[np.void],
    legacypipe: npt.NDArray[np.void],
    bands: Sequence[str],
    radius_arcsec: float = MATCH_RADIUS_ARCSEC,
) -> MatchedSources:
    """Match lite's sources to legacypipe's, one to one, and keep what the metrics need."""
    idx = match_radec(legacypipe["ra"], legacypipe["dec"], lite["ra"], lite["dec"], radius_arcsec)
    ok = idx >= 0
    lp, li = legacypipe[ok], lite[idx[ok]]
    dec = lp["dec"].astype(np.float64)
    d_ra = ((li["ra"] - lp["ra"] + 540.0) % 360.0 - 180.0) * np.cos(np.radians(dec)) * 3600.0
    d_dec = (li["dec"].astype(np.float64) - dec) * 3600.0

    def col(t: npt.NDArray[np.void], name: str) -> FloatArray:
        return np.asarray(t[name], np.float64)

    return MatchedSources(
        bands=tuple(bands),
        n_lite=len(lite),
        n_legacypipe=len(legacypipe),
        lp_sn=total_sn(legacypipe, bands),
        lp_matched=ok,
        d_ra=np.asarray(d_ra, np.float64),
        d_dec=np.asarray(d_dec, np.float64),
        type_lite=_types(li),
        type_lp=_types(lp),
        flux_lite={b: col(li, f"flux_{b}") for b in bands},
        ivar_lite={b: col(li, f"flux_ivar_{b}") for b in bands},
        flux_lp={b: col(lp, f"flux_{b}") for b in bands},
        ivar_lp={b: col(lp, f"flux_ivar_{b}") for b in bands},
    )


def combine_matches(parts: Sequence[MatchedSources]) -> MatchedSources:
    """Several bricks' matches as one (the bands of the first)."""
    bands = parts[0].bands

    def cat(name: str) -> Any:
        return np.concatenate([getattr(p, name) for p in parts])

    def catd(name: str) -> dict[str, FloatArray]:
        return {b: np.concatenate([getattr(p, name)[b] for p in parts]) for b in bands}

    return MatchedSources(
        bands=bands,
        n_lite=sum(p.n_lite for p in parts),
        n_legacypipe=sum(p.n_legacypipe for p in parts),
        lp_sn=cat("lp_sn"),
        lp_matched=cat("lp_matched"),
        d_ra=cat("d_ra"),
        d_dec=cat("d_dec"),
        type_lite=cat("type_lite"),
        type_lp=cat("type_lp"),
        flux_lite=catd("flux_lite"),
        ivar_lite=catd("ivar_lite"),
        flux_lp=catd("flux_lp"),
        ivar_lp=catd("ivar_lp"),
    )


def point_sources(m: MatchedSources, band: str) -> BoolArray:
    """Pairs typed PSF by both engines with legacypipe S/N > 20 in ``band`` (and both ivars)."""
    f, iv, ivl = m.flux_lp[band], m.ivar_lp[band], m.ivar_lite[band]
    with np.errstate(invalid="ignore"):
        sn = f * np.sqrt(np.clip(np.nan_to_num(iv), 0, None))
        return np.asarray(
            (m.type_lite == "PSF")
            & (m.type_lp == "PSF")
            & (np.nan_to_num(sn) > FLUX_SN)
            & (np.nan_to_num(ivl) > 0)
            & np.isfinite(m.flux_lite[band])
        )


def flux_agreement(m: MatchedSources, band: str) -> FluxAgreement:
    """lite / legacypipe and the error-normalised difference of a band's bright point sources."""
    sel = point_sources(m, band)
    fl, fp = m.flux_lite[band][sel], m.flux_lp[band][sel]
    err = np.sqrt(1.0 / m.ivar_lite[band][sel] + 1.0 / m.ivar_lp[band][sel])
    ratio, pull = fl / fp, (fl - fp) / err
    n = int(sel.sum())
    return FluxAgreement(
        n=n,
        ratio_median=float(np.median(ratio)) if n else math.nan,
        ratio_sigma=robust_sigma(ratio),
        pull_median=float(np.median(pull)) if n else math.nan,
        pull_sigma=robust_sigma(pull),
    )


def type_confusion(m: MatchedSources) -> dict[str, dict[str, int]]:
    """legacypipe type → lite type → pairs (only the combinations that occur)."""
    counts = Counter(zip(m.type_lp.tolist(), m.type_lite.tolist(), strict=True))
    out: dict[str, dict[str, int]] = {}
    for (lp, li), n in sorted(counts.items()):
        out.setdefault(lp, {})[li] = n
    return out


# -- maps --------------------------------------------------------------------------------------


@dataclass
class MapStats:
    """The two runs' maps of a brick reduced to what adds up over bricks."""

    maskbits: dict[str, MaskbitAgreement] = field(default_factory=dict)
    maskbits_pixels: int = 0
    depth_median: dict[str, float] = field(default_factory=dict)
    depth_pixels: dict[str, int] = field(default_factory=dict)
    depth_hist: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def maskbit_agreement(
    lite: npt.NDArray[np.integer[Any]],
    legacypipe: npt.NDArray[np.integer[Any]],
    lite_values: dict[str, int],
    legacypipe_values: dict[str, int] | None = None,
) -> dict[str, MaskbitAgreement]:
    """Per bit name set in either map: pixels set in each, in both (same-shape maps).

    Bits are compared by name, each map read with its own bit values (a dr10 and a dr11 map
    place SATUR_/ALLMASK_ differently); a name one map's table lacks is unset in that map.
    The ``value`` shown is legacypipe's (lite's where legacypipe has no such bit).
    """
    lp_values = lite_values if legacypipe_values is None else legacypipe_values
    names = {**lite_values, **lp_values}
    out = {}
    for name, value in sorted(names.items(), key=lambda kv: kv[1]):
        none = np.zeros(np.shape(lite), bool)
        a = (lite & lite_values[name]) != 0 if name in lite_values else none
        b = (legacypipe & lp_values[name]) != 0 if name in lp_values else none
        if a.any() or b.any():
            out[name] = MaskbitAgreement(
                name, value, int(a.size), int(a.sum()), int(b.sum()), int((a & b).sum())
            )
    return out


def _depth_edges() -> FloatArray:
    """log10 ratio bin edges, a bin centred on 0 (equal maps give a median of exactly 1)."""
    n = round(DEPTH_RANGE_DEX / DEPTH_BIN_DEX)
    return np.asarray((np.arange(-n, n + 2) - 0.5) * DEPTH_BIN_DEX, np.float64)


def depth_ratio(
    lite: npt.NDArray[np.floating[Any]], legacypipe: npt.NDArray[np.floating[Any]]
) -> tuple[float, int, npt.NDArray[np.int64]]:
    """Median lite / legacypipe depth where both > 0, its pixel count, its log10 histogram."""
    both = (lite > 0) & (legacypipe > 0) & np.isfinite(lite) & np.isfinite(legacypipe)
    ratio = lite[both] / legacypipe[both]
    edges = _depth_edges()
    logs = np.clip(np.log10(ratio), edges[0], edges[-1])
    hist = np.histogram(logs, edges)[0].astype(np.int64)
    return (float(np.median(ratio)) if ratio.size else math.nan), int(ratio.size), hist


def histogram_median(hist: npt.NDArray[np.int64]) -> float:
    """The median ratio of a depth histogram (the centre of the bin holding the middle pixel)."""
    total = int(hist.sum())
    if not total:
        return math.nan
    edges = _depth_edges()
    i = int(np.searchsorted(np.cumsum(hist), (total + 1) / 2.0))
    return float(10 ** (0.5 * (edges[i] + edges[i + 1])))


def map_stats(lite: EngineBrick, legacypipe: EngineBrick, bands: Sequence[str]) -> MapStats:
    """Compare a brick's maskbits and depth maps (maps of different shapes are not compared)."""
    stats = MapStats()
    if lite.maskbits is not None and legacypipe.maskbits is not None:
        if lite.maskbits.shape == legacypipe.maskbits.shape:
            lv, pv = lite.maskbit_values, legacypipe.maskbit_values
            moved = sorted(k for k in set(lv) & set(pv) if lv[k] != pv[k])
            if moved:
                stats.notes.append(
                    "maskbits compared by name, with other values in the two maps: "
                    + ", ".join(f"{k} (lite {lv[k]}, legacypipe {pv[k]})" for k in moved)
                )
            for only, mine, other in (("lite", lv, pv), ("legacypipe", pv, lv)):
                if extra := sorted(set(mine) - set(other)):
                    stats.notes.append(f"maskbits only {only}'s map names: {', '.join(extra)}")
            stats.maskbits = maskbit_agreement(lite.maskbits, legacypipe.maskbits, lv, pv)
            stats.maskbits_pixels = int(lite.maskbits.size)
        else:
            stats.notes.append(
                f"maskbits: map shapes differ (lite {lite.maskbits.shape}, legacypipe "
                f"{legacypipe.maskbits.shape}): not compared"
            )
    for b in bands:
        if b in lite.depth and b in legacypipe.depth:
            if lite.depth[b].shape != legacypipe.depth[b].shape:
                stats.notes.append(f"depth-{b}: map shapes differ: not compared")
                continue
            med, n, hist = depth_ratio(lite.depth[b], legacypipe.depth[b])
            stats.depth_median[b], stats.depth_pixels[b], stats.depth_hist[b] = med, n, hist
    return stats


def combine_maps(parts: Sequence[MapStats]) -> MapStats:
    """Several bricks' map statistics as one (counts summed, the depth median from histograms)."""
    out = MapStats()
    values: dict[str, int] = {}
    for p in parts:
        out.maskbits_pixels += p.maskbits_pixels
        values.update({name: bit.value for name, bit in p.maskbits.items()})
        for b, hist in p.depth_hist.items():
            out.depth_hist[b] = out.depth_hist.get(b, np.zeros_like(hist)) + hist
            out.depth_pixels[b] = out.depth_pixels.get(b, 0) + p.depth_pixels[b]
    for name, value in values.items():
        # Every brick's pixels count, also those of bricks where the bit is set in neither map.
        have = [p.maskbits[name] for p in parts if name in p.maskbits]
        out.maskbits[name] = MaskbitAgreement(
            name,
            value,
            out.maskbits_pixels,
            sum(x.n_lite for x in have),
            sum(x.n_legacypipe for x in have),
            sum(x.n_both for x in have),
        )
    out.maskbits = dict(sorted(out.maskbits.items(), key=lambda kv: kv[1].value))
    for b, hist in out.depth_hist.items():
        exact = [p.depth_median[b] for p in parts if b in p.depth_median]
        out.depth_median[b] = exact[0] if len(exact) == 1 else histogram_median(hist)
    return out


# -- a brick's (or all bricks') numbers --------------------------------------------------------


def brick_comparison(
    brick: str,
    m: MatchedSources,
    maps: MapStats,
    cost: dict[str, EngineCost],
    truth: dict[str, TruthAgreement] | None = None,
    notes: Sequence[str] = (),
) -> BrickComparison:
    """Every metric of a brick (or of all bricks: their matches and maps combined)."""
    bright = m.lp_sn > DETECTION_SN
    n_bright = int(bright.sum())
    nm = m.n_matched

    def frac(num: int, den: int) -> float:
        return num / den if den else math.nan

    return BrickComparison(
        brick=brick,
        bands=m.bands,
        n_lite=m.n_lite,
        n_legacypipe=m.n_legacypipe,
        n_matched=nm,
        matched_of_lite=frac(nm, m.n_lite),
        matched_of_legacypipe=frac(nm, m.n_legacypipe),
        lite_extra_of_legacypipe=frac(m.n_lite - nm, m.n_legacypipe),
        n_legacypipe_bright=n_bright,
        bright_matched=frac(int((bright & m.lp_matched).sum()), n_bright),
        flux={b: flux_agreement(m, b) for b in m.bands},
        n_offsets=nm,
        offset_ra_median=float(np.median(m.d_ra)) if nm else math.nan,
        offset_dec_median=float(np.median(m.d_dec)) if nm else math.nan,
        offset_ra_sigma=robust_sigma(m.d_ra),
        offset_dec_sigma=robust_sigma(m.d_dec),
        type_agreement=frac(int((m.type_lite == m.type_lp).sum()), nm),
        type_confusion=type_confusion(m),
        maskbits=list(maps.maskbits.values()),
        maskbits_pixels=maps.maskbits_pixels,
        depth_ratio=dict(maps.depth_median),
        depth_pixels=dict(maps.depth_pixels),
        cost=cost,
        truth=truth or {},
        notes=[*notes, *maps.notes],
    )


def combined_cost(costs: Sequence[dict[str, EngineCost]]) -> dict[str, EngineCost]:
    """All bricks' cost per engine: wall times summed, the largest peak memory (None: unknown).

    A sum over only some bricks would mislead: an engine missing any brick's wall time has none.
    """
    out = {}
    for engine in ENGINES:
        walls = [c[engine].wall_s if engine in c else None for c in costs]
        mems = [c[engine].peak_mem_mb for c in costs if engine in c]
        wall = sum(w for w in walls if w is not None) if all(w is not None for w in walls) else None
        known = [x for x in mems if x is not None]
        if wall is not None or known:
            out[engine] = EngineCost(wall, max(known) if known else None)
    return out
