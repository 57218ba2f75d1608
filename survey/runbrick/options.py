"""The lite runbrick's options: legacypipe's runbrick flags that the lite engine honours.

One frozen dataclass so that a brick's options travel to a worker (and into logs) as a value;
``__post_init__`` rejects combinations runbrick itself would reject.  A custom target
(``--radec RA DEC`` with ``-W``/``-H``) is ``radec`` here; its brick name is
``options.brickname`` (``custom-RRRRRR[p|m]DDDDD``), the name ``run_brick`` must be given.
"""

from __future__ import annotations

from dataclasses import dataclass

from lsdr.survey.core.bricks import (
    BRICK_PIXSCALE,
    BRICK_SIZE_PIX,
    checked_target,
    custom_brickname,
)
from lsdr.survey.core.cameras import DEFAULT_BANDS
from lsdr.survey.core.errors import UsageError
from lsdr.survey.runbrick.tractorschema import FLAVOURS

STAGES = ("tims", "refs", "outliers", "srcs", "fitblobs", "coadds", "writecat")
"""legacypipe's stage chain as far as the lite engine implements it, in order (``--no-wise``)."""


@dataclass(frozen=True)
class RunbrickOptions:
    """What to run for a brick: bands, grid size, stages, pickles, checkpoints (runbrick flags)."""

    bands: tuple[str, ...] = DEFAULT_BANDS
    """``--bands``."""
    width: int = BRICK_SIZE_PIX
    """``-W``: brick grid width in pixels."""
    height: int = BRICK_SIZE_PIX
    """``-H``: brick grid height in pixels."""
    pixscale: float = BRICK_PIXSCALE
    """``--pixscale``: arcsec per brick pixel."""
    zoom: tuple[int, int, int, int] | None = None
    """``--zoom x0 x1 y0 y1``: run only brick pixels ``[x0:x1, y0:y1]`` of the W × H grid."""
    stages: tuple[str, ...] = ("writecat",)
    """``--stage`` (repeatable): stages run even if their pickle exists."""
    write_stages: tuple[str, ...] = ()
    """``--write-stage``: stages whose state is pickled after they run."""
    force_all: bool = False
    """``--force-all``: ignore every pickle (checkpoints are still read, as legacypipe does)."""
    pickle_pattern: str | None = None
    """``--pickle`` with ``%(stage)s``; None = the release layout's pattern for the brick."""
    checkpoint: str | None = None
    """``--checkpoint`` file; None = no checkpointing of fitted blobs."""
    checkpoint_period: float = 600.0
    """``--checkpoint-period``: seconds between checkpoint rewrites."""
    skip: bool = False
    """``--skip``: do nothing when the brick's tractor catalogue exists and reads."""
    bail_out: bool = False
    """``--bail-out``: skip the blobs not in the checkpoint and flag them BAILOUT."""
    threads: int = 1
    """``--threads``."""
    release: int = 10000
    """``--release`` written in the catalogue."""
    outliers: bool = True
    """Run the ``outliers`` stage; False is legacypipe's ``--no-outliers``."""
    iterative: bool = True
    """Search each fitted blob's residuals for more sources; False is ``--no-iterative``."""
    fit_budget_s: float | None = None
    """Seconds the fitblobs stage may spend before it saves its checkpoint and raises
    ``TimeoutError`` (failure class ``timeout``: the flow reruns the brick with ``bail_out``)."""
    radec: tuple[float, float] | None = None
    """``--radec RA DEC`` (degrees): a custom target centred there instead of a grid brick,
    named ``brickname`` (brickid −1, the whole W × H grid unique); None = a grid brick."""
    star_clusters_cat: str | None = None
    """``NGC-star-clusters.fits`` for the CLUSTER masks; None = ``$LSDR_STAR_CLUSTERS_CAT``, else
    the legacypipe build's package data, else the vendored tarball (``starclusters``)."""
    release_flavour: str = "dr10"
    """The tractor schema written (``tractorschema.FLAVOURS``): its columns, header cards and
    maskbit values; dr9/dr10 keep the (null) WISE columns of those releases, dr11 is
    legacypipe HEAD's ``--no-wise`` catalogue without them."""

    def __post_init__(self) -> None:
        """Reject values runbrick would reject."""
        if not self.bands or len(set(self.bands)) != len(self.bands):
            raise UsageError(f"bands {self.bands!r} must be a non-empty list without repeats")
        if self.width < 1 or self.height < 1:
            raise UsageError(f"brick size {self.width}x{self.height} must be positive")
        if self.zoom is not None:
            x0, x1, y0, y1 = self.zoom
            if not (0 <= x0 < x1 <= self.width and 0 <= y0 < y1 <= self.height):
                raise UsageError(
                    f"zoom {self.zoom!r} must satisfy 0 <= x0 < x1 <= {self.width} and "
                    f"0 <= y0 < y1 <= {self.height}"
                )
        if not 0.01 <= self.pixscale <= 60.0:
            raise UsageError(f"pixscale {self.pixscale} arcsec/pixel is out of range")
        for stage in (*self.stages, *self.write_stages):
            if stage not in STAGES:
                raise UsageError(f"unknown stage {stage!r}; expected one of {STAGES}")
        if not self.stages:
            raise UsageError("no stage to run")
        if self.checkpoint_period < 0:
            raise UsageError(f"checkpoint period {self.checkpoint_period} s must be >= 0")
        if self.fit_budget_s is not None and self.fit_budget_s < 0:
            raise UsageError(f"fit budget {self.fit_budget_s} s must be >= 0")
        if self.threads < 1:
            raise UsageError(f"threads {self.threads} must be at least 1")
        if self.pickle_pattern is not None and "%(stage)s" not in self.pickle_pattern:
            raise UsageError(f"pickle pattern {self.pickle_pattern!r} lacks '%(stage)s'")
        if self.radec is not None:
            if len(self.radec) != 2:
                raise UsageError(f"radec {self.radec!r} must be (RA, Dec)")
            checked_target(*self.radec)
        if self.release_flavour not in FLAVOURS:
            raise UsageError(
                f"release flavour {self.release_flavour!r} is not one of {', '.join(FLAVOURS)}"
            )

    @property
    def brickname(self) -> str | None:
        """The custom target's brick name (legacypipe's ``custom-%06i%s%05i``); None without."""
        return None if self.radec is None else custom_brickname(*self.radec)

    @property
    def wise_columns(self) -> bool:
        """Whether the catalogue written has the (null) WISE columns: all flavours but dr11."""
        return self.release_flavour != "dr11"
