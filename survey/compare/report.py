"""The comparison as Markdown: where the engines differ most, then every table, then the plots.

Written to be included in ``docs/validation.md`` or shown as a Prefect artifact: headings start
at level 2 under one level-1 title, plots are linked relative to the report's directory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from lsdr.survey.compare.inputs import ENGINES
from lsdr.survey.compare.metrics import (
    DETECTION_SN,
    FLUX_SN,
    BrickComparison,
    EngineComparison,
)
from lsdr.survey.compare.ranking import largest_differences


def _num(x: float | None, digits: int = 3) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.1f} %"


def _mas(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{1000 * x:+.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
    ]


def _rows(result: EngineComparison) -> list[BrickComparison]:
    """Each brick, then all of them (only when there is more than one)."""
    return [*result.bricks, result.combined] if len(result.bricks) > 1 else list(result.bricks)


def _name(c: BrickComparison) -> str:
    return "**all**" if c.brick == "all" else c.brick


def sources_table(result: EngineComparison) -> list[str]:
    """Sources of each run and how many match."""
    rows = [
        [
            _name(c),
            str(c.n_lite),
            str(c.n_legacypipe),
            str(c.n_matched),
            _pct(c.matched_of_lite),
            _pct(c.matched_of_legacypipe),
            _pct(c.lite_extra_of_legacypipe),
            f"{_pct(c.bright_matched)} of {c.n_legacypipe_bright}",
        ]
        for c in _rows(result)
    ]
    head = ["brick", "lite", "legacypipe", "matched", "of lite", "of legacypipe"]
    head += ["lite extras / legacypipe", f"legacypipe S/N > {DETECTION_SN:g} matched"]
    return _table(head, rows)


def flux_table(result: EngineComparison) -> list[str]:
    """Point-source flux ratios and error-normalised differences per brick and band."""
    rows = []
    for c in _rows(result):
        for b, f in c.flux.items():
            rows.append(
                [
                    _name(c),
                    b,
                    str(f.n),
                    _num(f.ratio_median, 4),
                    _num(f.ratio_sigma, 4),
                    _num(f.pull_median, 2),
                    _num(f.pull_sigma, 2),
                ]
            )
    head = ["brick", "band", "N", "median f_lite/f_lp", "robust σ", "median pull", "σ pull"]
    return _table(head, rows)


def position_table(result: EngineComparison) -> list[str]:
    """Offsets of matched sources and how often their types agree."""
    rows = [
        [
            _name(c),
            str(c.n_offsets),
            _mas(c.offset_ra_median),
            _mas(c.offset_dec_median),
            _num(1000 * c.offset_ra_sigma, 1),
            _num(1000 * c.offset_dec_sigma, 1),
            _pct(c.type_agreement),
        ]
        for c in _rows(result)
    ]
    head = ["brick", "N", "median ΔRA (mas)", "median ΔDec (mas)", "σ RA (mas)", "σ Dec (mas)"]
    return _table([*head, "same type"], rows)


def confusion_table(c: BrickComparison) -> list[str]:
    """Matched sources by legacypipe type (rows) and lite type (columns)."""
    lite_types = sorted({t for row in c.type_confusion.values() for t in row})
    rows = [
        [f"**{lp}**", *(str(row.get(t, 0)) for t in lite_types)]
        for lp, row in sorted(c.type_confusion.items())
    ]
    return _table(["legacypipe \\ lite", *lite_types], rows) if rows else []


def maskbits_table(c: BrickComparison) -> list[str]:
    """Per maskbit set in either map: pixels in each, both, agreement."""
    rows = [
        [
            b.bit,
            str(b.value),
            str(b.n_lite),
            str(b.n_legacypipe),
            str(b.n_both),
            _num(b.agree, 4),
            _pct(b.overlap),
        ]
        for b in c.maskbits
    ]
    head = ["bit", "value", "pixels lite", "pixels legacypipe", "both", "agree", "overlap"]
    return _table(head, rows)


def depth_table(result: EngineComparison) -> list[str]:
    """Median depth ratio per band and brick."""
    bands = result.combined.bands
    rows = [[_name(c), *(f"{_num(c.depth_ratio.get(b), 3)}" for b in bands)] for c in _rows(result)]
    return _table(["brick", *(f"{b} depth lite/lp" for b in bands)], rows)


def truth_table(result: EngineComparison) -> list[str]:
    """Star flux / truth per engine (and the error-normalised residual σ)."""
    bands = result.combined.bands
    rows = []
    for c in _rows(result):
        for engine in ENGINES:
            t = c.truth.get(engine)
            if t is None:
                continue
            rows.append(
                [
                    _name(c),
                    engine,
                    *(
                        f"{_num(t.flux_over_truth[b], 4)} (σ {_num(t.residual_sigma[b], 2)}, "
                        f"N={t.n_flux_stars[b]})"
                        for b in bands
                    ),
                ]
            )
    head = ["brick", "engine", *(f"{b} flux/truth" for b in bands)]
    return _table(head, rows) if rows else []


def cost_table(result: EngineComparison) -> list[str]:
    """Wall time and peak memory per engine from the ledgers (where known)."""
    rows = []
    for c in _rows(result):
        if not c.cost:
            continue
        lite, lp = c.cost.get("lite"), c.cost.get("legacypipe")
        wall = [x.wall_s if x else None for x in (lite, lp)]
        mem = [x.peak_mem_mb if x else None for x in (lite, lp)]
        ratio = wall[1] / wall[0] if wall[0] and wall[1] else None
        rows.append(
            [
                _name(c),
                *(_num(w, 1) for w in wall),
                _num(ratio, 2),
                *(_num(m, 0) for m in mem),
            ]
        )
    head = ["brick", "lite wall (s)", "legacypipe wall (s)", "lp / lite", "lite peak MB"]
    return _table([*head, "legacypipe peak MB"], rows) if rows else []


def report_markdown(
    result: EngineComparison, plots: Sequence[Path] = (), base: Path | None = None
) -> str:
    """The whole report; plot links relative to ``base`` (the report's directory)."""
    c = result.combined
    names = ", ".join(b.brick for b in result.bricks)
    lines = [
        "# lite against legacypipe",
        "",
        f"lite: `{result.lite_dir}` · legacypipe: `{result.legacypipe_dir}` · truth: "
        f"{f'`{result.truth}`' if result.truth else 'none'}",
        "",
        f"{len(result.bricks)} brick{'s' if len(result.bricks) != 1 else ''} ({names}); sources "
        f"matched one to one within {result.radius_arcsec:g}″; ratios are lite / legacypipe, "
        "offsets lite − legacypipe. Made by `lsdr compare` (metrics: `docs/compare.md`).",
        "",
        "## Where they differ most",
        "",
    ]
    worst = largest_differences(result)
    if worst:
        lines += [f"{i}. **{d.where}**: {d.text}." for i, d in enumerate(worst, 1)]
    else:
        lines.append("Nowhere: every metric agrees exactly.")
    lines += ["", "## Sources", "", *sources_table(result)]
    lines += [
        f"## Fluxes of point sources (PSF in both, legacypipe S/N > {FLUX_SN:g})",
        "",
        "pull = (f_lite − f_lp) / √(σ_lite² + σ_lp²), the difference against the quoted errors.",
        "",
        *flux_table(result),
    ]
    lines += ["## Positions and types", "", *position_table(result)]
    if confusion := confusion_table(c):
        lines += ["Types of the matched sources (all bricks):", "", *confusion]
    lines += ["## Maskbits", ""]
    if c.maskbits:
        lines += [
            f"All bricks, {c.maskbits_pixels} pixels; agree = fraction of pixels where the bit "
            "is the same in both maps, overlap = pixels set in both / set in either.",
            "",
            *maskbits_table(c),
        ]
    elif c.maskbits_pixels:
        lines += [f"No maskbit is set in either map ({c.maskbits_pixels} pixels compared).", ""]
    else:
        lines += ["No maskbits maps compared.", ""]
    lines += ["## Depth maps", "", "Median of depth_lite / depth_lp where both > 0.", ""]
    lines += depth_table(result)
    if truth := truth_table(result):
        lines += [
            "## Against the truth",
            "",
            f"Median flux / true flux of matched stars with S/N > {FLUX_SN:g} "
            "(`survey/simulate/validate.py`), with the normalised residual σ.",
            "",
            *truth,
        ]
    lines += ["## Cost", ""]
    lines += cost_table(result) or ["Not known: neither run has a ledger (`state/`).", ""]
    if plots:
        lines += ["## Plots", ""]
        for p in plots:
            link = os.path.relpath(p, base) if base is not None else str(p)
            lines += [f"![{p.stem}]({link})", ""]
    notes = [f"{b.brick}: {n}" for b in result.bricks for n in b.notes]
    notes += [f"all: {n}" for n in c.notes]
    if notes:
        lines += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    return "\n".join(lines).rstrip() + "\n"
