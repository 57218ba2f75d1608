"""Compare two runs of the same bricks, lite's and legacypipe's, and write what was found.

:func:`compare_runs` reads both directories brick by brick and returns the numbers with the
matched sources the plots need; :func:`write_comparison` writes the JSON, the plots and the
Markdown report (each atomically).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lsdr.survey.compare.inputs import (
    ENGINES,
    catalog_bricks,
    ledger_costs,
    read_engine_brick,
)
from lsdr.survey.compare.metrics import (
    MATCH_RADIUS_ARCSEC,
    EngineComparison,
    MapStats,
    MatchedSources,
    TruthAgreement,
    brick_comparison,
    combine_maps,
    combine_matches,
    combined_cost,
    map_stats,
    match_catalogs,
)
from lsdr.survey.core.cameras import DEFAULT_BANDS
from lsdr.survey.core.errors import UsageError
from lsdr.survey.core.fileio import write_text_atomic
from lsdr.survey.core.layout import ReleaseLayout, checked_brick
from lsdr.survey.simulate.validate import BrickMatch

JSON_NAME = "compare.json"
REPORT_NAME = "compare.md"


@dataclass
class Comparison:
    """The numbers, and the matched sources and maps of all bricks (for the plots)."""

    result: EngineComparison
    matched: MatchedSources
    maps: MapStats
    written: list[Path] = field(default_factory=list)


def default_truth(lite_dir: Path, legacypipe_dir: Path) -> Path | None:
    """The truth catalogue of either run's directory (``truth/truth.fits``), if there is one."""
    for root in (lite_dir, legacypipe_dir):
        path = ReleaseLayout(root).truth_catalog
        if path.is_file():
            return path
    return None


def chosen_bricks(
    lite_dir: Path, legacypipe_dir: Path, bricks: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """The bricks to compare (those asked for, else those both runs catalogued), and notes.

    The notes name the bricks only one run catalogued (left out when none were asked for).
    """
    for what, root in (("lite", lite_dir), ("legacypipe", legacypipe_dir)):
        if not Path(root).is_dir():
            raise UsageError(f"{what} directory {root}: not a directory")
    if bricks:
        return [checked_brick(b) for b in dict.fromkeys(bricks)], []
    lite, lp = catalog_bricks(lite_dir), catalog_bricks(legacypipe_dir)
    both = [b for b in lite if b in set(lp)]
    if not both:
        raise UsageError(
            f"no brick has a tractor catalogue in both {lite_dir} ({len(lite)} bricks) and "
            f"{legacypipe_dir} ({len(lp)} bricks)"
        )
    notes = [
        f"only {what} catalogued, not compared: {' '.join(only)}"
        for what, only in (
            ("lite", [b for b in lite if b not in both]),
            ("legacypipe", [b for b in lp if b not in both]),
        )
        if only
    ]
    return both, notes


def compare_runs(
    lite_dir: Path,
    legacypipe_dir: Path,
    bricks: Sequence[str] | None = None,
    *,
    truth: Path | None = None,
    bands: Sequence[str] = DEFAULT_BANDS,
    radius_arcsec: float = MATCH_RADIUS_ARCSEC,
) -> Comparison:
    """Compare each brick of the two runs, and all of them together."""
    from lsdr.survey.compare.truth import match_truth, read_truth, truth_agreement

    lite_dir, legacypipe_dir = Path(lite_dir), Path(legacypipe_dir)
    names, left_out = chosen_bricks(lite_dir, legacypipe_dir, bricks)
    bands = tuple(bands)
    truth_table = None
    if truth is not None:
        truth_table = read_truth(Path(truth))
    dirs = {"lite": lite_dir, "legacypipe": legacypipe_dir}
    costs = {e: ledger_costs(dirs[e], names) for e in ENGINES}
    per_brick, matches, maps = [], [], []
    truth_matches: dict[str, list[BrickMatch]] = {e: [] for e in ENGINES}
    for brick in names:
        runs = {e: read_engine_brick(e, dirs[e], brick, bands) for e in ENGINES}
        m = match_catalogs(runs["lite"].catalog, runs["legacypipe"].catalog, bands, radius_arcsec)
        stats = map_stats(runs["lite"], runs["legacypipe"], bands)
        cost = {e: costs[e][brick] for e in ENGINES if brick in costs[e]}
        notes = [n for r in runs.values() for n in r.notes]
        truth_here: dict[str, TruthAgreement] = {}
        if truth_table is not None:
            for e, run in runs.items():
                tm = match_truth(run, truth_table, bands)
                if tm is None:
                    why = "no maskbits map" if run.maskbits is None else "maps cut out of the brick"
                    notes.append(f"{e}: {why}: no truth comparison")
                    continue
                truth_matches[e].append(tm)
                agreement = truth_agreement([tm])
                if agreement is not None:
                    truth_here[e] = agreement
        per_brick.append(brick_comparison(brick, m, stats, cost, truth_here, notes))
        matches.append(m)
        maps.append(stats)
    all_matched, all_maps = combine_matches(matches), combine_maps(maps)
    all_truth = {e: t for e in ENGINES if (t := truth_agreement(truth_matches[e])) is not None}
    combined = brick_comparison(
        "all",
        all_matched,
        all_maps,
        combined_cost([b.cost for b in per_brick]),
        all_truth,
        left_out,
    )
    result = EngineComparison(
        lite_dir=str(lite_dir),
        legacypipe_dir=str(legacypipe_dir),
        truth=str(truth) if truth is not None else None,
        radius_arcsec=radius_arcsec,
        bricks=per_brick,
        combined=combined,
    )
    return Comparison(result, all_matched, all_maps)


def write_comparison(comparison: Comparison, out: Path, report: Path | None = None) -> list[Path]:
    """Write ``compare.json``, the plots (``out``) and the report (default ``out/compare.md``)."""
    from lsdr.survey.compare.plots import write_plots
    from lsdr.survey.compare.report import report_markdown

    out = Path(out)
    report = Path(report) if report is not None else out / REPORT_NAME
    json_path = write_text_atomic(out / JSON_NAME, comparison.result.to_json())
    plots = write_plots(comparison, out)
    write_text_atomic(report, report_markdown(comparison.result, plots, report.parent))
    comparison.written = [report, json_path, *plots]
    return comparison.written
