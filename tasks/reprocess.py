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
from lsdr.survey.core.phase_options import PHASE_OPTIONS, PhaseOptions
from lsdr.survey.core.reprocess_request import PER_BRICK_PHASES, ReprocessRequest, region_bricks
from lsdr.tasks.recorded import recorded_release


@dataclass(frozen=True)
class ReprocessPlan:
    """What a valid request runs: the release's bricks of its region, each phase's options."""

    bricks: list[str]
    phases: list[tuple[str, PhaseOptions]]


def plan_reprocess(
    layout: ReleaseLayout, request: ReprocessRequest, settings: Settings
) -> ReprocessPlan:
    """The request checked against the release: its bricks and phase options, or a UsageError.

    Each phase runs with the options the release last ran with (:func:`recorded_release`),
    the tractor phase on the region's bricks.  Reads only (the brick list, the ledger, the
    bricks' tractor sidecars): the CLI calls it before the Prefect server or the cluster
    starts, the flow before any unit.
    """
    from lsdr.survey.pretractor.bricklist import read_brick_list

    try:
        release_bricks = read_brick_list(layout)
    except InputFileError as err:
        raise UsageError(f"the release has no usable brick list: {err}") from None
    bricks = region_bricks(request, release_bricks, settings.reprocess_max_bricks)
    force = list(bricks) if request.force else []
    release = recorded_release(layout, settings, bricks)
    phases: list[tuple[str, PhaseOptions]] = []
    for name in request.phases:
        update: dict[str, Any] = {"force": force} if name in PER_BRICK_PHASES else {}
        # tractor on the region; the others over the whole release: flows/reprocess.py says why
        update["bricks"] = bricks if name == "tractor" else None
        options = PHASE_OPTIONS[name].model_validate(
            {**getattr(release, name).model_dump(), **update}
        )
        phases.append((name, options))
    return ReprocessPlan(bricks, phases)
