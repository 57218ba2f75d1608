"""The options a release last ran with, and a request's options laid over them field by field.

A run triggered from outside (a deployment clicked in the UI, a REST call, a reprocess request)
must make the release as the release was made: the demo's bricks are 1800² at 0.524″, and a
click on ``tractor`` with the form's defaults (3600² at 0.262″) would otherwise redo every
brick on another grid.  The record is the ledger's (the last ``lsdr run release``, as the
nightly increment repeats it), else what the bricks' tractor sidecars say.  No Prefect here:
``lsdr reprocess`` reads it before the server or the cluster starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from lsdr.infra.settings import Settings
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import (
    BricksOptions,
    PhaseOptions,
    ReleaseOptions,
    TractorOptions,
)

if TYPE_CHECKING:
    from lsdr.infra.ledger import Ledger

M = TypeVar("M", bound=BaseModel)


def recorded_release(
    layout: ReleaseLayout, settings: Settings, bricks: Sequence[str] | None = None
) -> ReleaseOptions:
    """The options the release last ran with (the defaults where nothing is recorded).

    The ledger's record (:func:`release_record`); a release without one (its phases run one
    by one) gets the tractor options its bricks' sidecars record (``bricks``, default the
    brick list; :func:`lsdr.tasks.tractor.recorded_options`), else the defaults.  Reads only.
    """
    from lsdr.infra.ledger import Ledger, default_url
    from lsdr.tasks.tractor import recorded_options

    ledger = Ledger.existing(settings.ledger_url or default_url(layout.state_dir))
    recorded = release_record(ledger, layout) if ledger is not None else None
    if recorded is not None:
        return recorded
    if bricks is None:
        bricks = layout.brick_list.read_text().split() if layout.brick_list.is_file() else []
    grid = recorded_options(layout, bricks) or {}
    return ReleaseOptions(tractor=TractorOptions(**grid))


def release_record(ledger: Ledger, layout: ReleaseLayout) -> ReleaseOptions | None:
    """The last ``lsdr run release``'s options, in the region its brick list was made for.

    The region is the bricks phase's own record (its sidecar's summary) when it has one, so
    that the brick list never grows past it; never published (publishing stays its own
    decision) and never without the pre-tractor phases.  None when no release ran here.
    """
    from lsdr.tasks.sidecars import read_sidecar, sidecar_path

    recorded = ledger.chain_options("release")
    if recorded is None:
        return None
    options = ReleaseOptions.model_validate_json(recorded)
    doc = read_sidecar(sidecar_path(layout, "bricks", "brick-list")) or {}
    if "region" in doc.get("summary", {}):
        region = doc["summary"]["region"]
        bricks = BricksOptions(region=None if region is None else tuple(region))
        pretractor = options.pretractor.model_copy(update={"bricks": bricks})
        options = options.model_copy(update={"pretractor": pretractor})
    update = {"destination": None, "publish_with_failures": False, "skip_pretractor": False}
    return options.model_copy(update=update)


def recorded_phase(release: ReleaseOptions, phase: str) -> PhaseOptions | None:
    """``phase``'s options in the release's record (None: the record has none for it).

    The pre-tractor phases are the ``pretractor`` chain's fields; ``kdtree``, ``depthcut`` and
    ``publish`` are not recorded (the chain runs the first two with their defaults).
    """
    if phase == "release":
        return release
    if phase == "pretractor":
        return release.pretractor
    for chain in (release, release.pretractor):
        if phase in type(chain).model_fields:
            options = getattr(chain, phase)
            if isinstance(options, PhaseOptions):
                return options
    return None


def over_record(given: M | None, recorded: M) -> M:
    """``recorded`` with the fields ``given`` set explicitly, nested models field by field.

    A field counts as given when the request named it (pydantic's ``model_fields_set``), so
    ``{"bricks": ["1801p325"]}`` keeps the recorded grid; a nested model (a release's
    ``tractor``) is laid over its record the same way.  The result is validated again.
    """
    if given is None:
        return recorded
    merged: dict[str, Any] = recorded.model_dump()
    for name in given.model_fields_set:
        value, base = getattr(given, name), getattr(recorded, name)
        if isinstance(value, BaseModel) and isinstance(base, type(value)):
            merged[name] = over_record(value, base).model_dump()
        else:
            merged[name] = value.model_dump() if isinstance(value, BaseModel) else value
    return type(recorded).model_validate(merged)


def deployed_options(
    phase: str, layout: ReleaseLayout, settings: Settings, given: PhaseOptions | None
) -> PhaseOptions | None:
    """What a deployment's run of ``phase`` runs with: ``given`` over the release's record."""
    recorded = recorded_phase(recorded_release(layout, settings), phase)
    if recorded is None:
        return given
    if given is not None and not isinstance(given, type(recorded)):
        raise TypeError(f"{phase}: options {type(given).__name__}, not {type(recorded).__name__}")
    return over_record(given, recorded)
