"""``compare``: lite's run of some bricks against legacypipe's, published in the Prefect UI.

One task-free flow: the comparison is a few seconds per brick of reading and matching
(``survey/compare/``), so it runs in the flow itself; the report goes to the run's Markdown
artifact ``engine-comparison`` and each plot to an image artifact (``compare-<plot>``), the
PNG inlined, since the Prefect server serves no files of the release.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field

from lsdr.infra.server_watch import server_lost
from lsdr.survey.compare.ranking import largest_differences
from lsdr.survey.compare.report import report_markdown
from lsdr.survey.compare.runs import Comparison, compare_runs, default_truth, write_comparison

log = logging.getLogger("lsdr.flows")

ARTIFACT_KEY = "engine-comparison"


class CompareResult(BaseModel):
    """What the comparison wrote and its headline numbers."""

    model_config = ConfigDict(extra="forbid")

    report: str
    numbers: str
    plots: list[str] = Field(default_factory=list)
    bricks: list[str]
    n_lite: int
    n_legacypipe: int
    n_matched: int
    differences: list[str] = Field(default_factory=list)
    """Where the engines differ most, worst first (the report's first section)."""


@flow(name="compare")
def compare(
    lite_dir: str,
    legacypipe_dir: str,
    bricks: list[str] | None = None,
    truth: str | None = None,
    use_truth: bool = True,
    out: str | None = None,
    report: str | None = None,
) -> CompareResult:
    """Compare the two runs brick by brick, write the report, publish it as an artifact.

    ``out`` defaults to ``<lite_dir>/compare``, ``report`` to ``<out>/compare.md``, ``truth``
    to either run's ``truth/truth.fits`` when ``use_truth``.
    """
    lite, lp = Path(lite_dir), Path(legacypipe_dir)
    where = Path(out) if out else lite / "compare"
    chosen = Path(truth) if truth else default_truth(lite, lp) if use_truth else None
    comparison = compare_runs(lite, lp, bricks, truth=chosen)
    written = write_comparison(comparison, where, Path(report) if report else None)
    publish(comparison, written[2:])
    c = comparison.result.combined
    return CompareResult(
        report=str(written[0]),
        numbers=str(written[1]),
        plots=[str(p) for p in written[2:]],
        bricks=[b.brick for b in comparison.result.bricks],
        n_lite=c.n_lite,
        n_legacypipe=c.n_legacypipe,
        n_matched=c.n_matched,
        differences=[f"{d.where}: {d.text}" for d in largest_differences(comparison.result)],
    )


def publish(comparison: Comparison, plots: list[Path]) -> None:
    """The report as the run's Markdown artifact, the plots as image artifacts (a view only)."""
    try:
        from prefect.artifacts import create_markdown_artifact
        from prefect.context import FlowRunContext

        from lsdr.flows.release import plot_artifacts

        if FlowRunContext.get() is None or server_lost():
            return
        text = report_markdown(comparison.result)
        if plots:
            text += "\nPlots (image artifacts `compare-…`): " + ", ".join(map(str, plots)) + "\n"
        create_markdown_artifact(text, key=ARTIFACT_KEY, description="lite against legacypipe")
        plot_artifacts(plots, prefix="compare")
    except Exception as err:  # artifacts are a view; never fail the comparison for one
        log.warning("could not publish the comparison artifacts: %s", err)
