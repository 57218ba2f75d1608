"""Where lite and legacypipe differ most: every metric's distance from agreement, ranked.

Each metric has a tolerance, the difference worth a look (1 % in flux, 0.02″ in position,
5 % of the sources…); a metric's score is its distance from perfect agreement in tolerances,
so a flux 3 % off (score 3) outranks a depth 10 % off (score 2).  Metrics with no qualifying
source (NaN) are left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from lsdr.survey.compare.metrics import BrickComparison, EngineComparison

TOLERANCES = {
    "matched_of_legacypipe": 0.05,
    "bright_matched": 0.02,
    "lite_extra_of_legacypipe": 0.05,
    "flux_ratio": 0.01,
    "flux_ratio_sigma": 0.02,
    "flux_pull_sigma": 1.0,
    "offset": 0.02,
    "offset_sigma": 0.05,
    "type_agreement": 0.10,
    "maskbit_overlap": 0.10,
    "depth_ratio": 0.05,
    "truth_flux": 0.01,
}
"""Per metric, the difference from perfect agreement that scores 1 (against the truth: the
difference between the engines' flux / truth)."""


@dataclass(frozen=True)
class Difference:
    """One metric of one brick (or of all bricks), how far it is from agreement, in words."""

    where: str
    metric: str
    score: float
    text: str


def _fmt_pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _brick_differences(c: BrickComparison) -> Iterator[Difference]:
    where = "all bricks" if c.brick == "all" else c.brick
    tol = TOLERANCES

    def item(metric: str, off: float, text: str) -> Iterator[Difference]:
        if math.isfinite(off) and off > 0:
            yield Difference(where, metric, off / tol[metric.split(":")[0]], text)

    yield from item(
        "matched_of_legacypipe",
        1 - c.matched_of_legacypipe,
        f"{_fmt_pct(1 - c.matched_of_legacypipe)} of legacypipe's {c.n_legacypipe} sources "
        f"have no lite source within 0.5″ ({c.n_legacypipe - c.n_matched} missing)",
    )
    yield from item(
        "bright_matched",
        1 - c.bright_matched,
        f"lite misses {_fmt_pct(1 - c.bright_matched)} of legacypipe's "
        f"{c.n_legacypipe_bright} sources with S/N > 10",
    )
    yield from item(
        "lite_extra_of_legacypipe",
        c.lite_extra_of_legacypipe,
        f"lite has {c.n_lite - c.n_matched} sources legacypipe lacks "
        f"({_fmt_pct(c.lite_extra_of_legacypipe)} of legacypipe's {c.n_legacypipe})",
    )
    for b, f in c.flux.items():
        yield from item(
            f"flux_ratio:{b}",
            abs(f.ratio_median - 1),
            f"{b} flux of point sources: lite/legacypipe median {f.ratio_median:.4f} "
            f"({_fmt_pct(f.ratio_median - 1)}, N={f.n})",
        )
        yield from item(
            f"flux_ratio_sigma:{b}",
            f.ratio_sigma,
            f"{b} flux ratio scatter {f.ratio_sigma:.4f} (robust σ, N={f.n})",
        )
        yield from item(
            f"flux_pull_sigma:{b}",
            f.pull_sigma,
            f"{b} flux difference is {f.pull_sigma:.2f}σ of the quoted errors (robust σ of "
            f"(f_lite − f_lp)/√(σ_lite²+σ_lp²), N={f.n}; median {f.pull_median:+.2f})",
        )
    for axis, med, sig in (
        ("RA", c.offset_ra_median, c.offset_ra_sigma),
        ("Dec", c.offset_dec_median, c.offset_dec_sigma),
    ):
        yield from item(
            f"offset:{axis}",
            abs(med),
            f"median {axis} offset lite − legacypipe {med * 1000:+.1f} mas (N={c.n_offsets})",
        )
        yield from item(
            f"offset_sigma:{axis}",
            sig,
            f"{axis} offset scatter {sig * 1000:.1f} mas (robust σ, N={c.n_offsets})",
        )
    swaps = sorted(
        ((n, lp, li) for lp, row in c.type_confusion.items() for li, n in row.items() if lp != li),
        reverse=True,
    )
    swap = ""
    if swaps:
        n, lp, li = swaps[0]
        swap = f"; most often legacypipe {lp} → lite {li} ({n})"
    yield from item(
        "type_agreement",
        1 - c.type_agreement,
        f"types agree for {_fmt_pct(c.type_agreement)} of {c.n_matched} matched sources{swap}",
    )
    for bit in c.maskbits:
        yield from item(
            f"maskbit_overlap:{bit.bit}",
            1 - bit.overlap,
            f"maskbit {bit.bit}: {bit.n_lite} pixels in lite, {bit.n_legacypipe} in legacypipe, "
            f"{bit.n_both} in both (overlap {_fmt_pct(bit.overlap)}, {bit.n_differ} pixels differ)",
        )
    for b, r in c.depth_ratio.items():
        yield from item(
            f"depth_ratio:{b}",
            abs(r - 1),
            f"{b} depth map: lite/legacypipe median {r:.3f} over {c.depth_pixels[b]} pixels",
        )
    t_lite, t_lp = c.truth.get("lite"), c.truth.get("legacypipe")
    if t_lite is not None and t_lp is not None:
        for b, r in t_lite.flux_over_truth.items():
            r_lp = t_lp.flux_over_truth.get(b, math.nan)
            yield from item(
                f"truth_flux:{b}",
                abs(r - r_lp),
                f"{b} star flux / truth: lite {r:.4f} (N={t_lite.n_flux_stars[b]}), legacypipe "
                f"{r_lp:.4f} (N={t_lp.n_flux_stars[b]})",
            )


def largest_differences(result: EngineComparison, n: int = 8) -> list[Difference]:
    """The ``n`` metrics farthest from agreement, all-bricks ones and each brick's, worst first.

    A single brick's metric is listed only when it scores above the all-bricks one, so that
    one brick's outlier shows up without every brick repeating the combined number.
    """
    combined = {d.metric: d for d in _brick_differences(result.combined)}
    found = list(combined.values())
    if len(result.bricks) > 1:
        for brick in result.bricks:
            for d in _brick_differences(brick):
                base = combined.get(d.metric)
                if base is None or d.score > 1.5 * base.score:
                    found.append(d)
    found.sort(key=lambda d: -d.score)
    # One line per kind of metric and place (the worst band, bit or axis), so that one bright
    # star's three bands do not fill the list.
    seen: set[tuple[str, str]] = set()
    kept = []
    for d in found:
        kind = (d.where, d.metric.split(":")[0])
        if kind not in seen:
            seen.add(kind)
            kept.append(d)
    return kept[:n]
