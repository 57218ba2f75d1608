"""The publish gate: a release whose ledger holds failed units is not published.

Used by ``lsdr run publish`` before anything starts and by the ``publish`` flow itself (so a
deployment or the ``release`` chain is held by the same rule).  Prefect-free: the CLI reads it
before the run's logging is set up, which must come before Prefect is imported.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lsdr.infra.ledger import FailedUnit, Ledger


def blocking_failures(ledger: Ledger | None) -> list[FailedUnit]:
    """The ledger's failed units that keep the release unpublished; publish's own do not."""
    if ledger is None:
        return []
    return [f for f in ledger.failed() if f.phase != "publish"]


def refusal(release_dir: Path | str, failed: Sequence[FailedUnit]) -> str | None:
    """Why the release is not published (one line: how many failed, where, the fix), or None."""
    if not failed:
        return None
    per_phase = Counter(f.phase for f in failed)
    where = ", ".join(f"{phase} {n}" for phase, n in sorted(per_phase.items()))
    root = shlex.quote(str(release_dir))
    one_phase = len(per_phase) == 1
    retry = f"--phase {next(iter(per_phase))}" if one_phase else "--phase P` for each phase"
    units = "unit" if len(failed) == 1 else "units"
    return (
        f"not published: {len(failed)} {units} failed ({where}): `lsdr status --release-dir "
        f"{root}` lists them; fix them, then `lsdr retry --release-dir {root} {retry}"
        f"{'`' if one_phase else ''}, rerun and publish again"
    )
