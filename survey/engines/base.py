"""What every per-unit science engine provides: the seam between ``tasks/`` and the science.

A task (``tasks/<phase>.py``, one module per phase) turns a unit into typed
options and calls one method of the unit's :class:`Engine`; the engine does the science and
returns a :class:`UnitOutput`: the files it wrote, a small summary and its outcome (done, no
data, or failed with a failure class).  ``lite`` (``lite.py``) delegates to lsdr's own code in
``survey/``; another engine (legacypipe's commands in a container) implements the same methods
without a change to ``flows/`` or ``tasks/``.

Engine methods, one per unit of science, each a legacypipe or legacyanalysis script in the
real pipeline: zeropoints and calibs of an image (``legacy_zeropoints.py``), merged calibs of an
exposure (``merge-calibs.py``), the CCD tables with their cuts (``merge_calibs``,
``update_ccd_cuts.py``), the kd-tree CCD file (``create_kdtrees.py``), the depth cut
(``depthcut.py``), runbrick on a brick, and the post-tractor science: bright neighbours
(``bright-neighbors.py``), the depth histogram (per brick, then merged;
``depth-histogram.py``), the brick summary (per RA chunk, then merged; ``brick-summary.py``),
sweeps (``generate-sweep-files.py``) and external matches (``match-external-catalog.py``).

Engine-free, whichever engine measured the data: the image list (``discover``) and the brick
list, which plan what to run; checksums and their verification, log tarballs and publishing,
which package the release; and the bookkeeping around every unit (fingerprints, sidecars, the
ledger, checkpoint removal, re-stamping the files bright neighbours rewrite).  These stay in
``tasks/`` and ``survey/``.

An engine may also raise instead of returning a failed outcome (lite does, as its science
raises): ``tasks/failures.py`` classifies the exception.  A failed outcome is for what an engine
learns without an exception, such as a command's exit status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from lsdr.survey.core.errors import FailureClass, UsageError
from lsdr.survey.posttractor.external import check_match_radius

if TYPE_CHECKING:
    from lsdr.survey.core.layout import ReleaseLayout
    from lsdr.survey.posttractor.external import ExternalCatalogue
    from lsdr.survey.posttractor.sweeps import SweepBox
    from lsdr.survey.pretractor.ccdcuts import CutOptions
    from lsdr.survey.runbrick.options import RunbrickOptions


class Outcome(StrEnum):
    """How a unit of engine work ended."""

    DONE = "done"
    """Its products are written."""
    NO_DATA = "no-data"
    """Nothing to make (a brick without CCDs): done, with no products."""
    FAILED = "failed"
    """It could not make its products; the output names the failure class and why."""


@dataclass(frozen=True)
class UnitOutput:
    """What a unit returns: the files it wrote, a small JSON-able summary and its outcome.

    A failed outcome carries its failure class and a one-line message; ``tasks/execute.py``
    records it as it records a raised error of that class.
    """

    paths: tuple[Path, ...]
    summary: Mapping[str, Any] = field(default_factory=dict)
    outcome: Outcome = Outcome.DONE
    failure_class: FailureClass | None = None
    message: str = ""

    def __post_init__(self) -> None:
        """A failed outcome names a known failure class; the others name none."""
        failed = self.outcome is Outcome.FAILED
        if failed and self.failure_class not in tuple(FailureClass):
            raise ValueError(
                f"a failed outcome needs a failure class ({', '.join(FailureClass)}), "
                f"not {self.failure_class!r}"
            )
        if not failed and self.failure_class is not None:
            raise ValueError(f"outcome {self.outcome} has no failure class")

    @classmethod
    def failed(cls, failure_class: FailureClass, message: str) -> UnitOutput:
        """A failed outcome: no products, its class and a one-line reason."""
        return cls((), outcome=Outcome.FAILED, failure_class=failure_class, message=message)

    @classmethod
    def of(cls, result: Any, outcome: Outcome = Outcome.DONE) -> UnitOutput:
        """The output of a survey function's result record: its files and its scalar fields."""
        return cls(result_paths(result), result_summary(result), outcome)


def result_paths(result: Any) -> tuple[Path, ...]:
    """The files a survey-level result record names (``path``/``paths``/``plots`` fields)."""
    out: list[Path] = []
    for name in ("path", "paths", "plots", "plot"):
        value = getattr(result, name, None)
        if value is None:
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        out.extend(Path(v) for v in items)
    return tuple(out)


def result_summary(result: Any) -> dict[str, Any]:
    """The scalar fields of a survey-level result record (counts, medians)."""
    if not is_dataclass(result):
        return {}
    summary: dict[str, Any] = {}
    for f in fields(result):
        value = getattr(result, f.name)
        if isinstance(value, (int, float, str, bool)) and f.name not in ("path", "plot"):
            summary[f.name] = value
        elif isinstance(value, dict):
            summary[f.name] = {str(k): v for k, v in value.items()}
    return summary


# -- options of the methods whose survey functions take loose keywords -------------------------
@dataclass(frozen=True)
class ZeropointOptions:
    """How to measure one image (``legacy_zeropoints.py`` flags)."""

    run_calibs: bool
    """Make the PSF and sky calibs a CCD lacks (else a missing calib is an input error)."""
    threads: int = 1
    """Threads the image may use."""

    def __post_init__(self) -> None:
        """Reject a thread count below one."""
        if self.threads < 1:
            raise UsageError(f"threads {self.threads} must be at least 1")


@dataclass(frozen=True)
class MergeTablesOptions:
    """How to merge the CCD tables (``update_ccd_cuts.py``'s cuts)."""

    cut: bool
    """Compute the ``ccd_cuts`` quality bits (``--cut``)."""
    cut_expnum: bool
    """Drop exposures with no sources (``--cut-expnum``)."""
    cuts: CutOptions | None = None
    """The cuts' thresholds; None = legacypipe's."""


@dataclass(frozen=True)
class MatchOptions:
    """What to match an external catalogue against, and how (``match-external-catalog.py``)."""

    bricks: tuple[str, ...]
    """``-F``: the bricks whose catalogues' primary objects are matched."""
    radius_arcsec: float
    """``--tolerance``: the match radius, arcsec."""

    def __post_init__(self) -> None:
        """Reject a radius that can match nothing."""
        check_match_radius(self.radius_arcsec)


# -- the protocol -------------------------------------------------------------------------------
@runtime_checkable
class Engine(Protocol):
    """The science of every per-unit phase; each method does one unit on the release's files."""

    @property
    def name(self) -> str:
        """The engine's name (``lite``)."""
        ...

    @property
    def version(self) -> str:
        """What goes into every unit's fingerprint: another version reruns every unit."""
        ...

    def zeropoints(
        self, layout: ReleaseLayout, image: str, options: ZeropointOptions
    ) -> UnitOutput:
        """Zeropoints, PSF and sky calibs of every CCD of one image."""
        ...

    def merge_calibs(self, layout: ReleaseLayout, image: str) -> UnitOutput:
        """One exposure's merged PsfEx and sky files from its per-CCD ones."""
        ...

    def merge_ccd_tables(
        self, layout: ReleaseLayout, annotated: Sequence[Path], options: MergeTablesOptions
    ) -> UnitOutput:
        """The survey-ccds and ccds-annotated tables per camera and band, with ``ccd_cuts``."""
        ...

    def ccds_kdtree(self, layout: ReleaseLayout) -> UnitOutput:
        """The kd-tree CCD file ``survey-ccds-<dr>.kd.fits`` over the merged tables."""
        ...

    def depth_cut(self, layout: ReleaseLayout, bricks: Sequence[str]) -> UnitOutput:
        """Per brick, the CCDs needed to reach the target depth: the depth-cut tables."""
        ...

    def runbrick(self, layout: ReleaseLayout, brick: str, options: RunbrickOptions) -> UnitOutput:
        """Catalogue, coadds, maskbits and metrics of one brick (no data: no CCDs on it)."""
        ...

    def bright_neighbours(self, layout: ReleaseLayout, brick: str) -> UnitOutput:
        """A brick's maskbits and catalogue updated from its neighbours' bright stars."""
        ...

    def brick_depth(self, layout: ReleaseLayout, brick: str) -> UnitOutput:
        """One brick's depth histogram counts over its primary pixels."""
        ...

    def merge_depth(self, layout: ReleaseLayout, bricks: Sequence[str]) -> UnitOutput:
        """The release's depth histogram (and its plot) from the bricks' counts."""
        ...

    def summarize_chunk(
        self, layout: ReleaseLayout, chunk: str, bricks: Sequence[str]
    ) -> UnitOutput:
        """The partial brick summary of one RA-degree chunk of bricks."""
        ...

    def merge_summary(self, layout: ReleaseLayout, chunks: Sequence[Path]) -> UnitOutput:
        """``survey-bricks-<dr>.fits.gz`` and the summary plots from the chunks."""
        ...

    def sweep(self, layout: ReleaseLayout, box: SweepBox, version: str) -> UnitOutput:
        """One sweep file: the box's primary objects, sweep columns."""
        ...

    def match_external(
        self, layout: ReleaseLayout, catalogue: ExternalCatalogue, options: MatchOptions
    ) -> UnitOutput:
        """One external catalogue matched to the bricks' primary objects."""
        ...
