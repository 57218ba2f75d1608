"""The ``lite`` engine: every :class:`~lsdr.survey.engines.base.Engine` method by lsdr's own code.

Each method calls the science in ``survey/`` (imported when first used, so that naming the
engine imports none of it) and turns its result record into a
:class:`~lsdr.survey.engines.base.UnitOutput`.  Failures are the science's own exceptions,
classified by ``tasks/failures.py``; a brick without CCDs is the one "no data" outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lsdr.survey.engines.base import (
    MatchOptions,
    MergeTablesOptions,
    Outcome,
    UnitOutput,
    ZeropointOptions,
)

if TYPE_CHECKING:
    from lsdr.survey.core.layout import ReleaseLayout
    from lsdr.survey.posttractor.external import ExternalCatalogue
    from lsdr.survey.posttractor.sweeps import SweepBox
    from lsdr.survey.runbrick.options import RunbrickOptions


class LiteEngine:
    """lsdr's own science with numpy, astropy, fitsio, scipy, sep and photutils."""

    name = "lite"

    @property
    def version(self) -> str:
        """``lite-<lsdr version>``: a new lsdr version reruns every unit."""
        from lsdr import __version__

        return f"{self.name}-{__version__}"

    # -- pre-tractor ----------------------------------------------------------------------------
    def zeropoints(
        self, layout: ReleaseLayout, image: str, options: ZeropointOptions
    ) -> UnitOutput:
        """``survey.zeropoints.measure_image``: the image's tables and the calibs it made."""
        from lsdr.survey.pretractor.zeropoints.image import measure_image

        out = measure_image(layout, image, run_calibs=options.run_calibs, threads=options.threads)
        return UnitOutput(
            (out.annotated, out.photom, *out.calibs),
            {"ccds": out.n_ccds, "no_stars": out.n_no_stars, "made_calibs": out.made_calibs},
        )

    def merge_calibs(self, layout: ReleaseLayout, image: str) -> UnitOutput:
        """``survey.calibs.merge_calibs``: the exposure's merged PsfEx and sky files."""
        from lsdr.survey.pretractor.calibs import merge_calibs

        merged = merge_calibs(layout, image)
        return UnitOutput((merged.psfex, merged.sky))

    def merge_ccd_tables(
        self, layout: ReleaseLayout, annotated: Sequence[Path], options: MergeTablesOptions
    ) -> UnitOutput:
        """``survey.ccdtables.merge_ccd_tables``: the tables, their row and cut counts."""
        from lsdr.survey.pretractor.ccdtables import merge_ccd_tables

        merged = merge_ccd_tables(
            layout,
            annotated,
            cut=options.cut,
            cut_expnum=options.cut_expnum,
            cut_options=options.cuts,
        )
        return UnitOutput(
            (*merged.survey_ccds.values(), *merged.annotated.values()),
            {
                "rows": merged.n_rows,
                "kept": merged.n_kept,
                "cuts": dict(merged.cut_counts),
                "dropped_expnums": list(merged.dropped_expnums),
            },
        )

    def ccds_kdtree(self, layout: ReleaseLayout) -> UnitOutput:
        """``survey.kdtree.write_ccds_kdtree`` over every row of the merged tables."""
        from lsdr.survey.pretractor.ccdtables import read_survey_ccds
        from lsdr.survey.pretractor.kdtree import write_ccds_kdtree

        ccds = read_survey_ccds(layout, kept_only=False)
        path = write_ccds_kdtree(ccds, layout.survey_ccds_kd)
        return UnitOutput((path,), {"ccds": len(ccds)})

    def depth_cut(self, layout: ReleaseLayout, bricks: Sequence[str]) -> UnitOutput:
        """``survey.depthcut.depth_cut``: the depth-cut table and its kd-tree."""
        from lsdr.survey.pretractor.depthcut import depth_cut

        result = depth_cut(layout, bricks)
        paths = [result.table] + ([result.kdtree] if result.kdtree else [])
        return UnitOutput(tuple(paths), {"ccds_in": result.n_in, "ccds_kept": result.n_kept})

    # -- tractor --------------------------------------------------------------------------------
    def runbrick(self, layout: ReleaseLayout, brick: str, options: RunbrickOptions) -> UnitOutput:
        """``survey.runbrick.stages.run_brick``: products, CCDs used, time, blob counts."""
        from lsdr.survey.runbrick.stages import run_brick

        result = run_brick(layout, brick, options)
        return UnitOutput(
            tuple(result.products),
            {
                "status": result.status,
                "ccds": result.n_ccds,
                "seconds": round(result.seconds, 1),
                **{k: v for k, v in result.fit_stats.items() if k.startswith("blobs_")},
            },
            Outcome.NO_DATA if result.status == "nothing-to-do" else Outcome.DONE,
        )

    # -- post-tractor ---------------------------------------------------------------------------
    def bright_neighbours(self, layout: ReleaseLayout, brick: str) -> UnitOutput:
        """``survey.brightneighbors.update_bright_neighbours``: the brick's files it may rewrite."""
        from lsdr.survey.posttractor.brightneighbors import update_bright_neighbours

        result = update_bright_neighbours(layout, brick)
        rewritten = [
            layout.coadd_maskbits(brick),
            layout.tractor(brick),
            layout.brick_checksums(brick),
        ]
        return UnitOutput(
            tuple(p for p in rewritten if p.exists()),
            {
                "pixels_changed": result.pixels_changed,
                "sources_changed": result.sources_changed,
                "neighbours": list(result.neighbours),
            },
        )

    def brick_depth(self, layout: ReleaseLayout, brick: str) -> UnitOutput:
        """``survey.depthhist.brick_depth_counts``: the brick's counts file."""
        from lsdr.survey.posttractor.depthhist import brick_depth_counts

        return UnitOutput((Path(brick_depth_counts(layout, brick).path),))

    def merge_depth(self, layout: ReleaseLayout, bricks: Sequence[str]) -> UnitOutput:
        """``survey.depthhist.merge_depth_histogram``: ``<dr>-depth.fits`` and its plot."""
        from lsdr.survey.posttractor.depthhist import merge_depth_histogram

        return UnitOutput.of(merge_depth_histogram(layout, bricks))

    def summarize_chunk(
        self, layout: ReleaseLayout, chunk: str, bricks: Sequence[str]
    ) -> UnitOutput:
        """``survey.bricksummary.summarize_chunk``: the chunk's partial summary."""
        from lsdr.survey.posttractor.bricksummary import summarize_chunk

        result = summarize_chunk(layout, chunk, bricks)
        return UnitOutput((Path(result.path),), {"bricks": result.bricks})

    def merge_summary(self, layout: ReleaseLayout, chunks: Sequence[Path]) -> UnitOutput:
        """``survey.bricksummary.merge_brick_summary``: the summary table and its plots."""
        from lsdr.survey.posttractor.bricksummary import merge_brick_summary

        return UnitOutput.of(merge_brick_summary(layout, [str(p) for p in chunks]))

    def sweep(self, layout: ReleaseLayout, box: SweepBox, version: str) -> UnitOutput:
        """``survey.sweeps.write_sweep``: the box's sweep file (none when it has no object)."""
        from lsdr.survey.posttractor.sweeps import write_sweep

        return UnitOutput.of(write_sweep(layout, box, version))

    def match_external(
        self, layout: ReleaseLayout, catalogue: ExternalCatalogue, options: MatchOptions
    ) -> UnitOutput:
        """``survey.external.match_external``: the catalogue's external-match file."""
        from lsdr.survey.posttractor.external import match_external

        radius = options.radius_arcsec
        return UnitOutput.of(match_external(layout, catalogue, options.bricks, radius))
