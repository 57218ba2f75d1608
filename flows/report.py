"""What a phase did: its report, the summary a flow returns, and the left-out lines.

A :class:`PhaseReport` holds one result per unit; :func:`phase_summary` and
:func:`combined_summary` turn reports into a flow's JSON-able return value, with the units it
left out because an upstream unit failed (:func:`left_out_line` says them in one line).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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


def phase_summary(
    report: PhaseReport,
    *,
    left_out: Sequence[Sequence[str]] = (),
    left_out_what: str = "unit",
    **extra: Any,
) -> dict[str, Any]:
    """A flow's JSON-able return value: counts, failed units, units left out, phase numbers.

    ``left_out``: (key, reason) of what the phase did not plan because an upstream unit
    failed; ``left_out_what`` names such a key ("image", "brick") in the summary lines.
    """
    return {
        "phase": report.phase,
        "counts": report.counts(),
        "failed": [[r.key, r.failure_class, r.message] for r in report.failed],
        **_left_out_fields(left_out, left_out_what),
        **extra,
    }


def _left_out_fields(left_out: Sequence[Sequence[str]], what: str) -> dict[str, Any]:
    """The summary's ``left_out`` (key, reason) pairs and what a key names."""
    return {"left_out": [list(item) for item in left_out], "left_out_what": what}


def combined_summary(
    phase: str,
    reports: Sequence[PhaseReport],
    *,
    left_out: Sequence[Sequence[str]] = (),
    left_out_what: str = "unit",
    **extra: Any,
) -> dict[str, Any]:
    """One summary for a phase run as several steps (per-brick units, then their merge)."""
    counts: dict[str, int] = {"done": 0, "cached": 0, "failed": 0}
    failed: list[list[Any]] = []
    for report in reports:
        for state, n in report.counts().items():
            counts[state] = counts.get(state, 0) + n
        failed += [[f"{r.phase}:{r.key}", r.failure_class, r.message] for r in report.failed]
    return {
        "phase": phase,
        "counts": counts,
        "failed": failed,
        **_left_out_fields(left_out, left_out_what),
        **extra,
    }


def left_out_line(
    phase: str, what: str, left_out: Sequence[Sequence[str]], limit: int | None = None
) -> str:
    """``merge: 1 image left out: <key> (zeropoints failed: <reason>)``; at most ``limit`` named."""
    n = len(left_out)
    shown = list(left_out) if limit is None else list(left_out)[:limit]
    text = "; ".join(f"{key} ({reason})" for key, reason in shown)
    more = f"; and {n - len(shown)} more" if len(shown) < n else ""
    return f"{phase}: {n} {what}{'' if n == 1 else 's'} left out: {text}{more}"
