"""What each phase can be asked to do: one typed, frozen options model per phase.

Every run option is defined here once, with its type, default, unit and check.  The CLI's
``lsdr run <phase>`` flags are built from these fields (their help shows the default written
here, and a flag left out means "the model's default"), a flow takes its phase's model as its
``options`` parameter (so a Prefect deployment's form is this model's JSON schema), and the
chains (``pretractor``, ``release``) are models made of their phases' models.  Unknown fields
are refused (``extra="forbid"``): Prefect's server accepts unknown parameters and the run would
crash later.

The checks are the domain's own (the brick grid, regions, cameras, runbrick's flags): a refused
value is a :class:`pydantic.ValidationError` whose message is the domain's one line.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lsdr.survey.core.bricks import BRICK_PIXSCALE, BRICK_SIZE_PIX, RaDecBox
from lsdr.survey.core.cameras import DEFAULT_BANDS
from lsdr.survey.core.errors import RegionError
from lsdr.survey.posttractor.external import MATCH_RADIUS_ARCSEC
from lsdr.survey.runbrick.options import RunbrickOptions

NAMED_REGIONS: dict[str, tuple[float, float, float, float]] = {
    "cookbook": (180.0, 181.0, 32.0, 33.0),
    "all": (0.0, 360.0, -90.0, 90.0),
}
"""Regions known by name; ``cookbook`` is the worked example (RA 180-181, Dec 32-33)."""

SWEEP_VERSION = "10.0"
"""The sweep directory name (``sweep/<version>/``), as DR10's ``sweep/10.0``."""


def region_tuple(value: object) -> tuple[float, float, float, float] | None:
    """:func:`region_box` as the four numbers a model stores (None stays None)."""
    if value is None:
        return None
    box = region_box(value)
    return (box.ra_min, box.ra_max, box.dec_min, box.dec_max)


def region_box(value: object) -> RaDecBox:
    """A region as given (a name, ``'ra_min,ra_max,dec_min,dec_max'`` or four numbers) as a box.

    :class:`RaDecBox` refuses a box off the sky or empty; ``ra_min > ra_max`` is a box across
    RA 0/360, as in legacypipe's queue_calibs.
    """
    if isinstance(value, RaDecBox):
        return value
    given = value
    if isinstance(value, str):
        if value in NAMED_REGIONS:
            return RaDecBox(*NAMED_REGIONS[value])
        try:
            value = [float(p) for p in value.split(",")]
        except ValueError:
            value = []
    numbers = list(value) if isinstance(value, list | tuple) else []
    if len(numbers) != 4 or not all(isinstance(v, int | float) for v in numbers):
        raise RegionError(
            f"region {given!r}: expected 'ra_min,ra_max,dec_min,dec_max' or one of "
            f"{', '.join(NAMED_REGIONS)}"
        )
    return RaDecBox(*(float(v) for v in numbers))


class PhaseOptions(BaseModel):
    """Base of the phase options: frozen, unknown fields refused, each field documented."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    phase: ClassVar[str] = ""
    """The phase these options are for (the CLI's, the ledger's and the flow's name)."""


class BrickSelection(PhaseOptions):
    """Options of a per-brick phase: which bricks (default: the phase's planned bricks)."""

    bricks: list[str] | None = Field(
        default=None, description="Only these bricks (default: every brick the phase plans)."
    )

    @field_validator("bricks")
    @classmethod
    def _bricks_on_grid(cls, names: list[str] | None) -> list[str] | None:
        """Each a brick of the grid (or a runbrick ``custom-`` name), never a path."""
        from lsdr.survey.core.layout import checked_brick

        return None if names is None else [checked_brick(name) for name in names]


class BrickUnitsSelection(BrickSelection):
    """Options of a phase with a unit per brick: which bricks, and which to recompute anyway.

    ``force`` names bricks whose own units run even when their sidecars say done (a forced
    rerun, recorded as such); units that read several bricks (a merge, a sweep box, a summary
    chunk) are not forced: they rerun when what they read changed.
    """

    force: list[str] = Field(
        default_factory=list,
        description="Recompute these bricks' units even when they are done (a forced rerun).",
    )

    @field_validator("force")
    @classmethod
    def _forced_on_grid(cls, names: list[str]) -> list[str]:
        """Each a brick of the grid, never a path."""
        from lsdr.survey.core.layout import checked_brick

        return [checked_brick(name) for name in names]


class DiscoverOptions(PhaseOptions):
    """``discover``: which cameras and nights of CP images go into the image list."""

    phase: ClassVar[str] = "discover"
    cameras: list[str] | None = Field(
        default=None, description="Only these cameras (90prime, mosaic, decam; default all)."
    )
    date_min: dt.date | None = Field(default=None, description="First night kept (YYYY-MM-DD).")
    date_max: dt.date | None = Field(default=None, description="Last night kept (YYYY-MM-DD).")

    @field_validator("cameras")
    @classmethod
    def _known_cameras(cls, names: list[str] | None) -> list[str] | None:
        """Each a camera lsdr knows."""
        from lsdr.survey.core.cameras import get_camera

        for name in names or []:
            get_camera(name)
        return names

    @model_validator(mode="after")
    def _nights_not_empty(self) -> DiscoverOptions:
        """A night range that selects something."""
        from lsdr.survey.pretractor.discover import check_nights

        check_nights(self.date_min, self.date_max)
        return self


class ZeropointsOptions(PhaseOptions):
    """``zeropoints``: per image, zeropoints and (optionally) its PSF and spline-sky calibs."""

    phase: ClassVar[str] = "zeropoints"
    run_calibs: bool = Field(
        default=True,
        description="Make PSF and sky calibs where neither the per-CCD nor the merged file exists.",
    )


class MergeOptions(PhaseOptions):
    """``merge``: the survey-ccds / ccds-annotated tables, with or without the quality cuts."""

    phase: ClassVar[str] = "merge"
    cut: bool = Field(default=True, description="Apply the ccd_cuts quality cuts.")
    cut_expnum: bool = Field(default=True, description="Drop exposures with no sources.")


class KdtreeOptions(PhaseOptions):
    """``kdtree``: no options (the kd-tree CCD file of the merged table)."""

    phase: ClassVar[str] = "kdtree"


class BricksOptions(PhaseOptions):
    """``bricks``: the brick list of a region (default: every brick the CCDs touch)."""

    phase: ClassVar[str] = "bricks"
    region: tuple[float, float, float, float] | None = Field(
        default=None,
        description="RA/Dec box 'ra_min,ra_max,dec_min,dec_max' (degrees) or a named region "
        f"({', '.join(NAMED_REGIONS)}); default every brick the CCDs touch.",
    )

    @field_validator("region", mode="before")
    @classmethod
    def _region_on_sky(cls, value: object) -> tuple[float, float, float, float] | None:
        """A box on the sky and not empty, from a name, a text or four numbers."""
        return region_tuple(value)

    def box(self) -> RaDecBox | None:
        """The region as a :class:`RaDecBox`, None for no region."""
        return None if self.region is None else RaDecBox(*self.region)


class DepthcutOptions(PhaseOptions):
    """``depthcut``: no options (per brick, the CCDs needed for the target depth)."""

    phase: ClassVar[str] = "depthcut"


class TractorOptions(BrickUnitsSelection):
    """``tractor``: runbrick on each brick; the grid and the runbrick flags lsdr passes on."""

    phase: ClassVar[str] = "tractor"
    width: int = Field(default=BRICK_SIZE_PIX, description="Brick grid width, pixels.")
    height: int = Field(default=BRICK_SIZE_PIX, description="Brick grid height, pixels.")
    pixscale: float = Field(default=BRICK_PIXSCALE, description="Brick grid pixel scale, arcsec.")
    zoom: tuple[int, int, int, int] | None = Field(
        default=None,
        description="Run only brick pixels [x0:x1, y0:y1] of each brick (runbrick's --zoom x0 x1 "
        "y0 y1; default the whole brick).",
    )
    keep_checkpoints: bool = Field(
        default=False, description="Keep each brick's checkpoint after it is done."
    )
    fit_budget_s: float | None = Field(
        default=None,
        description="Seconds of fitting per brick; past it, rerun from the checkpoint with "
        "--bail-out (default no budget).",
    )
    checkpoint_period: float | None = Field(
        default=None,
        description="Seconds between checkpoint rewrites while fitting (default runbrick's).",
    )
    bail_out: bool = Field(
        default=False,
        description="Keep the blobs each brick's checkpoint holds and skip the rest, flagged "
        "BAILOUT (runbrick's --bail-out: the cookbook's last resort for bricks that never finish).",
    )
    outliers: bool = Field(
        default=RunbrickOptions.outliers,
        description="Mask pixels one exposure has and the band's others contradict (cosmic "
        "rays, satellite trails).",
    )

    @model_validator(mode="after")
    def _runbrick_accepts(self) -> TractorOptions:
        """A grid and times runbrick accepts (its own checks, :class:`RunbrickOptions`)."""
        given: dict[str, Any] = {"fit_budget_s": self.fit_budget_s}
        if self.checkpoint_period is not None:
            given["checkpoint_period"] = self.checkpoint_period
        RunbrickOptions(
            width=self.width, height=self.height, pixscale=self.pixscale, zoom=self.zoom, **given
        )
        return self


class BrightneighborsOptions(BrickUnitsSelection):
    """``brightneighbors``: neighbouring bricks' bright stars in each brick's maskbits."""

    phase: ClassVar[str] = "brightneighbors"


class DepthOptions(BrickUnitsSelection):
    """``depth``: the release's depth histogram from the bricks' depth maps."""

    phase: ClassVar[str] = "depth"
    bands: list[str] = Field(default=list(DEFAULT_BANDS), description="Bands histogrammed.")


class SummaryOptions(BrickSelection):
    """``summary``: the survey-bricks table and its sky-map plots."""

    phase: ClassVar[str] = "summary"
    bands: list[str] = Field(default=list(DEFAULT_BANDS), description="Bands summarised.")


class SweepsOptions(BrickSelection):
    """``sweeps``: the primary objects' sweep columns per 5°×5° box."""

    phase: ClassVar[str] = "sweeps"
    version: str = Field(
        default=SWEEP_VERSION, description="Sweep directory name, sweep/<version>/."
    )

    @field_validator("version")
    @classmethod
    def _plain_name(cls, version: str) -> str:
        """One plain directory name (``10.0``), not a path."""
        from lsdr.survey.core.layout import checked_sweep_version

        return checked_sweep_version(version)


class ExternalOptions(BrickSelection):
    """``external``: the release matched to external catalogues."""

    phase: ClassVar[str] = "external"
    radius_arcsec: float = Field(default=MATCH_RADIUS_ARCSEC, description="Match radius, arcsec.")
    catalogues: list[dict[str, Any]] | None = Field(
        default=None,
        description="Catalogues to match (name, path, copycols, ra_column, dec_column); default "
        "the release's external-catalogues.yaml, else the cookbook's five SDSS catalogues.",
    )

    @field_validator("radius_arcsec")
    @classmethod
    def _positive(cls, radius: float) -> float:
        """A radius that can match anything."""
        from lsdr.survey.posttractor.external import check_match_radius

        return check_match_radius(radius)


class PackageOptions(BrickUnitsSelection):
    """``package``: brick checksums verified, the release's checksum files, the log tarballs."""

    phase: ClassVar[str] = "package"


class PublishOptions(PhaseOptions):
    """``publish``: the release copied to its destination with rsync."""

    phase: ClassVar[str] = "publish"
    destination: str = Field(description="rsync destination (a directory or host:path).")
    dry_run: bool = Field(default=False, description="List what would be copied.")
    publish_with_failures: bool = Field(
        default=False, description="Publish even when units of the release failed."
    )


class PretractorOptions(PhaseOptions):
    """``pretractor``: discover … bricks (and the depth cut when asked), each phase's options."""

    phase: ClassVar[str] = "pretractor"
    discover: DiscoverOptions = Field(default_factory=DiscoverOptions)
    zeropoints: ZeropointsOptions = Field(default_factory=ZeropointsOptions)
    merge: MergeOptions = Field(default_factory=MergeOptions)
    bricks: BricksOptions = Field(default_factory=BricksOptions)
    depth_cut: bool = Field(default=False, description="Run the depth cut.")


class ReleaseOptions(PhaseOptions):
    """``release``: every phase in order, each with its options; publish to a destination."""

    phase: ClassVar[str] = "release"
    pretractor: PretractorOptions = Field(default_factory=PretractorOptions)
    tractor: TractorOptions = Field(default_factory=TractorOptions)
    brightneighbors: BrightneighborsOptions = Field(default_factory=BrightneighborsOptions)
    depth: DepthOptions = Field(default_factory=DepthOptions)
    summary: SummaryOptions = Field(default_factory=SummaryOptions)
    sweeps: SweepsOptions = Field(default_factory=SweepsOptions)
    external: ExternalOptions = Field(default_factory=ExternalOptions)
    package: PackageOptions = Field(default_factory=PackageOptions)
    destination: str | None = Field(
        default=None, description="Publish here with rsync at the end (default: not published)."
    )
    publish_with_failures: bool = Field(
        default=False, description="Publish even when units of the release failed."
    )
    skip_pretractor: bool = Field(
        default=False, description="Start at the tractor phase (the pre-tractor products exist)."
    )


class NightlyOptions(PhaseOptions):
    """``nightly``: the increment: the CP images that arrived since the last one, and only them.

    The increment repeats the release as it last ran (its grid, its region as the bricks phase
    recorded it, its products; ``docs/nightly.md``); these fields say how far to go, not what to
    make, so that an increment can never make a release other than a whole rerun would.
    Images whose units failed stay pending and are tried again by the next increment.
    """

    phase: ClassVar[str] = "nightly"
    dry_run: bool = Field(
        default=False,
        description="List the images that arrived and the bricks their CCDs' footprints touch "
        "(from the images' headers, before any cut); run nothing, record nothing.",
    )


PHASE_OPTIONS: dict[str, type[PhaseOptions]] = {
    model.phase: model
    for model in (
        DiscoverOptions,
        ZeropointsOptions,
        MergeOptions,
        KdtreeOptions,
        BricksOptions,
        DepthcutOptions,
        TractorOptions,
        BrightneighborsOptions,
        DepthOptions,
        SummaryOptions,
        SweepsOptions,
        ExternalOptions,
        PackageOptions,
        PublishOptions,
        PretractorOptions,
        ReleaseOptions,
        NightlyOptions,
    )
}
"""Each phase's (and chain's) options model by the phase's name."""
