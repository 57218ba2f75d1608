"""``lsdr compare``: lite's run of some bricks measured against legacypipe's (and the truth).

Reads two run directories (releases, or ``lsdr runbrick --outdir`` trees) and writes the
comparison: ``compare.json``, the plots and a Markdown report.  Reads only; a missing or
unreadable catalogue is one line naming the file (exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def _names(values: list[str] | None) -> list[str] | None:
    """``--bricks a,b --bricks c`` as one list (empty items dropped), None when not given."""
    if not values:
        return None
    return [n for v in values for n in (s.strip() for s in v.split(",")) if n]


def compare(
    lite_dir: Annotated[
        Path,
        typer.Argument(help="The lite run: a release or runbrick --outdir.", show_default=False),
    ],
    legacypipe_dir: Annotated[
        Path, typer.Argument(help="The legacypipe run of the same bricks.", show_default=False)
    ],
    bricks: Annotated[
        list[str] | None,
        typer.Option(
            "--bricks",
            help="Only these bricks (comma-separated, repeatable). Default: every brick with a "
            "catalogue in both.",
        ),
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(
            "--truth",
            help="A simulated survey's truth catalogue. Default: truth/truth.fits of either "
            "directory, if there is one.",
        ),
    ] = None,
    no_truth: Annotated[
        bool, typer.Option("--no-truth", help="Do not compare with a truth catalogue.")
    ] = False,
    out: Annotated[Path, typer.Option("--out", help="Where compare.json and the plots go.")] = Path(
        "compare"
    ),
    report: Annotated[
        Path | None,
        typer.Option("--report", help="The Markdown report's path. Default: OUT/compare.md."),
    ] = None,
) -> None:
    """Compare lite with legacypipe brick by brick: sources, fluxes, positions, types, maps.

    Matches the two catalogues of each brick one to one within 0.5″ (and each with the truth
    of a simulated survey), compares the maskbits and depth maps pixel by pixel, and takes each
    brick's wall time and peak memory from the runs' ledgers when they have one. Prints the
    matched counts and where the report is; the report starts with where the engines differ
    most. Reads the two runs only.
    """
    from lsdr.options_check import output_dir
    from lsdr.survey.compare.runs import compare_runs, default_truth, write_comparison
    from lsdr.survey.core.errors import UsageError

    if truth is not None and no_truth:
        raise UsageError("give --truth or --no-truth, not both")
    if truth is not None and not truth.is_file():
        raise UsageError(f"--truth {truth}: no such file")
    output_dir("--out", out)
    chosen = None if no_truth else truth or default_truth(lite_dir, legacypipe_dir)
    comparison = compare_runs(lite_dir, legacypipe_dir, _names(bricks), truth=chosen)
    written = write_comparison(comparison, out, report)
    for c in comparison.result.bricks:
        print(
            f"{c.brick}: lite {c.n_lite}, legacypipe {c.n_legacypipe}, matched {c.n_matched} "
            f"sources"
        )
    c = comparison.result.combined
    if len(comparison.result.bricks) > 1:
        print(f"all: lite {c.n_lite}, legacypipe {c.n_legacypipe}, matched {c.n_matched} sources")
    if chosen is not None:
        print(f"truth: {chosen}")
    print(f"report: {written[0]}")
    print(f"numbers: {written[1]}")
