"""What a phase did: its report, the summary a flow returns, and the left-out lines.

A :class:`PhaseReport` holds one result per unit; :func:`phase_summary` and
:func:`combined_summary` turn reports into a flow's typed result (:class:`PhaseResult` or the
phase's subclass), with the units it left out because an upstream unit failed
(:func:`left_out_line` says them in one line).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from lsdr.flows.progress import phase_progress
from lsdr.tasks.unit import UnitResult


@dataclass
class PhaseReport:
    """What a phase did: one result per unit, in plan order."""

    phase: str
    results: list[UnitResult] = field(default_factory=list)

    def by_state(self, state: str) -> list[UnitResult]:
        """Results in one state (done, cached, failed)."""
        return [r for r in self.results if r.state == state]

    @property
    def failed(self) -> list[UnitResult]:
        """Units that failed."""
        return self.by_state("failed")

    @property
    def ok(self) -> bool:
        """True when no unit failed."""
        return not self.failed

    def counts(self) -> dict[str, int]:
        """Units by state."""
        out = {"done": 0, "cached": 0, "failed": 0}
        for r in self.results:
            out[r.state] = out.get(r.state, 0) + 1
        return out

    def summary_line(self) -> str:
        """One line for logs and the terminal."""
        return phase_progress(self.phase, self.results, len(self.results), finished=True).summary()


class UnitCounts(BaseModel):
    """A phase's units by state."""

    model_config = ConfigDict(extra="forbid")

    done: int = 0
    cached: int = 0
    failed: int = 0


class FailedUnit(NamedTuple):
    """A unit that failed: its key (``step:key`` in a phase of several steps), class, reason."""

    key: str
    failure_class: str
    message: str


class LeftOut(NamedTuple):
    """A unit a phase did not plan because an upstream unit failed, and that failure."""

    key: str
    reason: str


class PhaseResult(BaseModel):
    """What a phase flow returns: its counts, failed and left-out units, and why it did not run.

    The phases with numbers of their own return a subclass (:class:`DiscoverResult`, …); a
    field they do not declare is refused, so a typo in a flow is an error, not a lost number.
    """

    model_config = ConfigDict(extra="forbid")

    phase: str
    counts: UnitCounts = Field(default_factory=UnitCounts)
    failed: list[FailedUnit] = Field(default_factory=list)
    left_out: list[LeftOut] = Field(default_factory=list)
    left_out_what: str = "unit"
    """What a left-out key names ("image", "brick") in the summary lines."""
    skipped: str | None = None
    """Why the phase did not run (a failed upstream phase, a refused publish); None when it ran."""


class DiscoverResult(PhaseResult):
    """``discover``: images kept, and those dropped with the reason."""

    kept: int = 0
    dropped: list[list[str]] = Field(default_factory=list)


class MergeResult(PhaseResult):
    """``merge``: the CCD tables' unit, and the exposures' merged calibs as a step of its own."""

    merge_calibs: PhaseResult | None = None
    rows: int = 0
    kept: int = 0
    cuts: dict[str, int] = Field(default_factory=dict)
    dropped_expnums: list[int] = Field(default_factory=list)
    missing_tables: list[str] = Field(default_factory=list)


class BricksResult(PhaseResult):
    """``bricks``: the number of bricks in the brick list."""

    bricks: int = 0


class TractorResult(PhaseResult):
    """``tractor``: the bricks with no CCDs (nothing to fit, no catalogue)."""

    nothing_to_do: list[str] = Field(default_factory=list)


class BrightneighborsResult(PhaseResult):
    """``brightneighbors``: maskbits pixels changed over all bricks."""

    pixels_changed: int = 0


class DepthResult(PhaseResult):
    """``depth``: the release's depth histogram."""

    histogram: str | None = None


class SummaryResult(PhaseResult):
    """``summary``: the survey-bricks table."""

    table: str | None = None


class SweepsResult(PhaseResult):
    """``sweeps``: the sweep directory."""

    sweep_dir: str | None = None


class ExternalResult(PhaseResult):
    """``external``: the directory of the matched files."""

    external_dir: str | None = None


class PackageResult(PhaseResult):
    """``package``: bricks whose checksums were verified."""

    verified: int = 0


class PublishResult(PhaseResult):
    """``publish``: where to, or (a dry run) what would be copied."""

    destination: str | None = None
    dry_run: bool = False
    would_copy: list[str] = Field(default_factory=list)
    would_copy_total: int = 0


class ReleaseResult(BaseModel):
    """``release``: each phase's result, in order, and the release summary's path."""

    model_config = ConfigDict(extra="forbid")

    phases: list[PhaseResult]
    summary: str


R = TypeVar("R", bound=PhaseResult)


def phase_summary(
    report: PhaseReport,
    *,
    result: type[R] = PhaseResult,  # type: ignore[assignment]
    left_out: Sequence[Sequence[str]] = (),
    left_out_what: str = "unit",
    **extra: Any,
) -> R:
    """A flow's result from its report: counts, failed units, units left out, phase numbers.

    ``left_out``: (key, reason) of what the phase did not plan because an upstream unit
    failed; ``left_out_what`` names such a key ("image", "brick") in the summary lines;
    ``extra``: the fields of ``result``, the phase's own result type.
    """
    return result(
        phase=report.phase,
        counts=UnitCounts(**report.counts()),
        failed=[FailedUnit(r.key, str(r.failure_class), r.message or "") for r in report.failed],
        left_out=[LeftOut(*item) for item in left_out],
        left_out_what=left_out_what,
        **extra,
    )


def combined_summary(
    phase: str,
    reports: Sequence[PhaseReport],
    *,
    result: type[R] = PhaseResult,  # type: ignore[assignment]
    left_out: Sequence[Sequence[str]] = (),
    left_out_what: str = "unit",
    **extra: Any,
) -> R:
    """One result for a phase run as several steps (per-brick units, then their merge)."""
    counts = UnitCounts()
    failed: list[FailedUnit] = []
    for report in reports:
        for state, n in report.counts().items():
            setattr(counts, state, getattr(counts, state) + n)
        failed += [
            FailedUnit(f"{r.phase}:{r.key}", str(r.failure_class), r.message or "")
            for r in report.failed
        ]
    return result(
        phase=phase,
        counts=counts,
        failed=failed,
        left_out=[LeftOut(*item) for item in left_out],
        left_out_what=left_out_what,
        **extra,
    )


def left_out_line(
    phase: str, what: str, left_out: Sequence[Sequence[str]], limit: int | None = None
) -> str:
    """``merge: 1 image left out: <key> (zeropoints failed: <reason>)``; at most ``limit`` named."""
    n = len(left_out)
    shown = list(left_out) if limit is None else list(left_out)[:limit]
    text = "; ".join(f"{key} ({reason})" for key, reason in shown)
    more = f"; and {n - len(shown)} more" if len(shown) < n else ""
    return f"{phase}: {n} {what}{'' if n == 1 else 's'} left out: {text}{more}"
