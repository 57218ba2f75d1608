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
from lsdr.survey.core.phase_options import (
    PHASE_OPTIONS,
    PhaseOptions,
    ReleaseOptions,
    TractorOptions,
)
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

    Each phase runs with the options the release last ran with (:func:`release_options`),
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
    release = release_options(layout, settings, bricks)
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


def release_options(layout: ReleaseLayout, settings: Settings, bricks: list[str]) -> ReleaseOptions:
    """The options the release last ran with, for its phases after the pre-tractor ones.

    The ledger's record of the last ``lsdr run release`` (as the nightly increment repeats
    it); a release without one (its phases run one by one) gets the tractor options its
    bricks' sidecars record (:func:`lsdr.tasks.tractor.recorded_options`), else the defaults.
    """
    from lsdr.infra.ledger import Ledger, default_url
    from lsdr.tasks.tractor import recorded_options

    ledger = Ledger.existing(settings.ledger_url or default_url(layout.state_dir))
    recorded = ledger.chain_options("release") if ledger is not None else None
    if recorded is not None:
        return ReleaseOptions.model_validate_json(recorded)
    grid = recorded_options(layout, bricks) or {}
    return ReleaseOptions(tractor=TractorOptions(**grid))
