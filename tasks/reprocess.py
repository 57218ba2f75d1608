"""The ``reprocess-region`` flow's plan: a request checked against the release, as phase options.

No Prefect here: ``lsdr reprocess`` calls :func:`plan_reprocess` before the Prefect server or
the cluster starts (and before Prefect is imported), the flow before any unit starts
(``flows/reprocess.py`` says why the post-tractor phases run over the whole release).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lsdr.infra.settings import Settings
from lsdr.survey.core.errors import InputFileError, UsageError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import PHASE_OPTIONS, PhaseOptions, TractorOptions
from lsdr.survey.core.reprocess_request import PER_BRICK_PHASES, ReprocessRequest, region_bricks


@dataclass(frozen=True)
class ReprocessPlan:
    """What a valid request runs: the release's bricks of its region, each phase's options."""

    bricks: list[str]
    phases: list[tuple[str, PhaseOptions]]


def plan_reprocess(
    layout: ReleaseLayout, request: ReprocessRequest, settings: Settings
) -> ReprocessPlan:
    """The request checked against the release: its bricks and phase options, or a UsageError.

    Reads only (the brick list, the bricks' tractor sidecars): the CLI calls it before the
    Prefect server or the cluster starts, the flow before any unit.
    """
    from lsdr.survey.pretractor.bricklist import read_brick_list
    from lsdr.tasks.tractor import recorded_options

    try:
        release_bricks = read_brick_list(layout)
    except InputFileError as err:
        raise UsageError(f"the release has no usable brick list: {err}") from None
    bricks = region_bricks(request, release_bricks, settings.reprocess_max_bricks)
    force = list(bricks) if request.force else []
    grid = recorded_options(layout, bricks) or {}
    phases: list[tuple[str, PhaseOptions]] = []
    for name in request.phases:
        fields: dict[str, Any] = {"force": force} if name in PER_BRICK_PHASES else {}
        if name == "tractor":
            options: PhaseOptions = TractorOptions(**grid, bricks=bricks, **fields)
        else:
            options = PHASE_OPTIONS[name](
                **fields
            )  # the whole release: flows/reprocess.py says why
        phases.append((name, options))
    return ReprocessPlan(bricks, phases)
