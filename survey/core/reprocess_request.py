"""What a reprocess-region request may ask: a region of the release, its phases, how to run.

A request comes from anywhere (``lsdr reprocess``, the Prefect UI, ``prefect deployment run``,
a plain POST to the server's REST API), so everything is checked here, by the domain's own
validators, before any unit starts: the region (exactly one of an RA/Dec ``box``, a ``bricks``
list or a named ``region``), the phases, the engine and the cluster profile.  Unknown fields are
refused (Prefect's server accepts unknown parameters and the run would crash later).  What
needs the release (which of the region's bricks it has, how many, the configured maximum) is
:func:`region_bricks`, called by the flow and by the CLI before anything starts.

Each refusal is one line: a :class:`~lsdr.survey.core.errors.UsageError` (a
:class:`pydantic.ValidationError` from the model, whose message is that line;
:func:`request_error_line`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lsdr.survey.core.bricks import (
    CENTER_DEC,
    NCOL,
    NROWS,
    RaDecBox,
    brick_by_name,
    validate_brickname,
)
from lsdr.survey.core.errors import RegionError, UsageError
from lsdr.survey.core.phase_options import NAMED_REGIONS, PHASE_OPTIONS, region_tuple

REPROCESS_PHASES = (
    "tractor",
    "brightneighbors",
    "depth",
    "summary",
    "sweeps",
    "external",
    "package",
)
"""The phases a request may run, in chain order: runbrick and the post-tractor phases (the
``release`` chain's ``tractor`` and ``POST_TRACTOR``).  The pre-tractor phases work on images
and make release-wide tables, not a region's bricks; publishing is its own decision."""

PER_BRICK_PHASES = ("tractor", "brightneighbors", "depth", "package")
"""The phases with a unit per brick (package: its checksum verification): what ``force``
recomputes for the region's bricks."""


def _known_phase(name: str) -> str:
    """A phase a request may run, or a one-line refusal that says why not."""
    if name in REPROCESS_PHASES:
        return name
    allowed = ", ".join(REPROCESS_PHASES)
    if name in PHASE_OPTIONS:
        raise UsageError(
            f"phase {name!r} cannot be run for a region: a reprocess request runs {allowed}"
        )
    raise UsageError(f"unknown phase {name!r}: a reprocess request runs {allowed}")


class ReprocessRequest(BaseModel):
    """A request to reprocess a region of a release: the ``reprocess-region`` flow's parameters.

    The region is exactly one of ``box``, ``bricks`` or ``region``.  A box keeps the bricks
    whose centre lies in it (queue_calibs' cut, as the brick list's ``--region``), with
    ``ra_min > ra_max`` a box across RA 0/360; of those, the release's bricks are reprocessed
    and the others (sky the release does not cover) are left out.  Named bricks must all be
    the release's.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    box: tuple[float, float, float, float] | None = Field(
        default=None,
        description="RA/Dec box 'ra_min,ra_max,dec_min,dec_max' (degrees; ra_min > ra_max "
        "crosses RA 0): the release's bricks whose centre lies in it.",
    )
    bricks: list[str] | None = Field(
        default=None, description="These bricks of the release (names such as 1804p325)."
    )
    region: str | None = Field(
        default=None,
        description=f"A named region ({', '.join(NAMED_REGIONS)}): the release's bricks in it.",
    )
    phases: list[str] = Field(
        default=list(REPROCESS_PHASES),  # a plain default: the UI's form shows it
        description="Phases to run, in chain order whatever the order given "
        f"({', '.join(REPROCESS_PHASES)}; default all of them).",
    )
    engine: str | None = Field(
        default=None,
        description="Science engine (lite, legacypipe); default the release's setting.",
    )
    profile: str | None = Field(
        default=None,
        description="Cluster profile the workers run on (local, local-slurm, perlmutter-cpu, "
        "…); default the release's setting.",
    )
    force: bool = Field(
        default=False,
        description="Recompute the region's bricks even when done (their per-brick units in "
        "each phase); without it, only what changed is redone.",
    )
    priority: int = Field(
        default=0,
        description="Recorded with the run (its summary); it orders nothing inside lsdr. "
        "A deployment's work queue priority orders flow runs.",
    )
    allow_large: bool = Field(
        default=False,
        description="Allow a region with more bricks than the reprocess_max_bricks setting.",
    )

    @field_validator("box", mode="before")
    @classmethod
    def _box_on_sky(cls, value: object) -> tuple[float, float, float, float] | None:
        """A box on the sky, not empty, from a text or four numbers (:func:`region_box`)."""
        return region_tuple(value)

    @field_validator("bricks")
    @classmethod
    def _bricks_on_grid(cls, names: list[str] | None) -> list[str] | None:
        """Each a brick of the grid (never a path, never a custom brick); duplicates dropped."""
        if names is None:
            return None
        if not names:
            raise UsageError("bricks: the list is empty")
        return list(dict.fromkeys(validate_brickname(name) for name in names))

    @field_validator("region")
    @classmethod
    def _named(cls, name: str | None) -> str | None:
        """A region lsdr knows by name."""
        if name is not None and name not in NAMED_REGIONS:
            raise RegionError(
                f"unknown region {name!r}: known regions are {', '.join(NAMED_REGIONS)} "
                "(give a box as 'ra_min,ra_max,dec_min,dec_max')"
            )
        return name

    @field_validator("phases")
    @classmethod
    def _known_phases(cls, names: list[str]) -> list[str]:
        """Phases a request may run, in chain order, each once."""
        if not names:
            raise UsageError("phases: the list is empty")
        wanted = {_known_phase(name) for name in names}
        return [name for name in REPROCESS_PHASES if name in wanted]

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, name: str | None) -> str | None:
        """A named engine (built in or registered), not a module to import on request."""
        from lsdr.survey.engines.registry import known_engines

        if name is not None and name not in known_engines():
            raise UsageError(
                f"unknown engine {name!r}: known engines are {', '.join(known_engines())}"
            )
        return name

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, name: str | None) -> str | None:
        """A cluster profile of the registry (``infra/profiles``)."""
        from lsdr.infra.profiles.registry import known_profiles

        if name is not None and name not in known_profiles():
            raise UsageError(
                f"unknown cluster profile {name!r}: known profiles are "
                f"{', '.join(known_profiles())}"
            )
        return name

    @model_validator(mode="after")
    def _one_region(self) -> ReprocessRequest:
        """Exactly one of box, bricks, region; a box or region with bricks of the grid in it."""
        given = [name for name in ("box", "bricks", "region") if getattr(self, name) is not None]
        if len(given) != 1:
            got = ", ".join(given) if given else "none"
            raise UsageError(f"give exactly one of box, bricks or region (got {got})")
        box = self.sky_box()
        if box is not None and not _any_brick_centred(box):
            raise RegionError(f"empty region: no brick of the grid has its centre in {_shown(box)}")
        return self

    def sky_box(self) -> RaDecBox | None:
        """The region as a box (a box, or a named region's), None for a brick list."""
        if self.box is not None:
            return RaDecBox(*self.box)
        if self.region is not None:
            return RaDecBox(*NAMED_REGIONS[self.region])
        return None

    def describe(self) -> str:
        """The region as the request gave it, for logs and summaries."""
        box = self.sky_box()
        if self.region is not None:
            return f"region {self.region}"
        if box is not None:
            return _shown(box)
        return f"bricks {','.join(self.bricks or [])}"

    def setting_overrides(self) -> dict[str, Any]:
        """The settings the request sets (its engine and cluster profile), as overrides."""
        overrides: dict[str, Any] = {}
        if self.engine is not None:
            overrides["engine"] = self.engine
        if self.profile is not None:
            overrides["cluster"] = self.profile
        return overrides


def _shown(box: RaDecBox) -> str:
    return f"box {box.ra_min:g},{box.ra_max:g},{box.dec_min:g},{box.dec_max:g}"


def _centred(box: RaDecBox, ra: float, dec: float) -> bool:
    """Whether a brick centre lies in the box, edges included (:func:`bricks_in_region`'s cut)."""
    in_ra = (ra >= box.ra_min or ra <= box.ra_max) if box.wraps else box.ra_min <= ra <= box.ra_max
    return in_ra and box.dec_min <= dec <= box.dec_max


def _any_brick_centred(box: RaDecBox) -> bool:
    """Whether a brick of the grid has its centre in the box (one narrower than a brick may not).

    Row by row, without making the box's bricks (``all`` has 662,174 of them).
    """
    for row in range(NROWS):
        dec = float(CENTER_DEC[row])
        if not box.dec_min <= dec <= box.dec_max:
            continue
        n = int(NCOL[row])
        ra = (np.arange(n) + 0.5) * 360.0 / n
        if box.wraps:
            in_ra = (ra >= box.ra_min) | (ra <= box.ra_max)
        else:
            in_ra = (ra >= box.ra_min) & (ra <= box.ra_max)
        if bool(in_ra.any()):
            return True
    return False


def region_bricks(
    request: ReprocessRequest, release_bricks: list[str], max_bricks: int
) -> list[str]:
    """The release's bricks of the request's region, or a one-line :class:`UsageError`.

    ``release_bricks``: the release's brick list (``bricks.txt``).  Named bricks must all be
    in it; a box keeps the release's bricks whose centre lies in it (the box's other bricks
    are sky without the release's data, and are left out).  None at all is an empty region;
    more than ``max_bricks`` (the ``reprocess_max_bricks`` setting) is refused unless the
    request allows it.
    """
    box = request.sky_box()
    if box is None:
        in_release = set(release_bricks)
        chosen = list(request.bricks or [])
        missing = [b for b in chosen if b not in in_release]
        if missing:
            raise UsageError(
                f"brick {', '.join(missing)} is not in the release's brick list (bricks.txt, "
                f"{len(release_bricks)} bricks)"
            )
    else:
        chosen = []
        for name in release_bricks:
            brick = brick_by_name(name)
            if _centred(box, brick.ra, brick.dec):
                chosen.append(name)
        if not chosen:
            raise RegionError(
                f"empty region: no brick of the release's brick list (bricks.txt, "
                f"{len(release_bricks)} bricks) has its centre in {request.describe()}"
            )
    if len(chosen) > max_bricks and not request.allow_large:
        raise UsageError(
            f"{request.describe()} has {len(chosen)} bricks of the release, more than "
            f"reprocess_max_bricks ({max_bricks}): set allow_large (--allow-large) to run it"
        )
    return chosen


def request_error_line(err: ValidationError) -> str:
    """A refused request as one line: the field and the domain's reason."""
    first = err.errors()[0]
    reason = str(first["msg"]).removeprefix("Value error, ")
    where = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        known = ", ".join(ReprocessRequest.model_fields)
        return f"unknown parameter {where!r}: a reprocess request takes {known}"
    return f"{where}: {reason}" if where else reason
