"""runbrick's command line: one brick (or an RA/Dec target) through legacypipe's stages.

:class:`RunbrickCommand` names runbrick's flags; :func:`runbrick_argv` turns it into
``python -O <py>/legacypipe/runbrick.py …`` for a flag set, with the pickles and checkpoint in
the release's shared ``pickles/<bri>/`` and ``checkpoints/<bri>/`` (so a brick requeued on
another node resumes).  ``production`` adds the production scripts' flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lsdr.survey.core.bricks import BRICK_PIXSCALE, BRICK_SIZE_PIX, custom_brickname
from lsdr.survey.core.errors import UsageError
from lsdr.survey.core.layout import ReleaseLayout, checked_brick
from lsdr.survey.engines.legacypipe.install import LegacypipeInstall, number_arg
from lsdr.survey.engines.legacypipe.versions import FlagSet
from lsdr.survey.runbrick.options import RunbrickOptions

RUNBRICK_STAGES = (
    "tims",
    "refs",
    "outliers",
    "halos",
    "image_coadds",
    "srcs",
    "fitblobs",
    "coadds",
    "wise_forced",
    "galex_forced",
    "writecat",
)
"""legacypipe's runbrick stages (``run_brick``'s prerequisites), in chain order."""


@dataclass(frozen=True)
class RunbrickCommand:
    """runbrick's flags for one brick; None (or False) leaves a flag off (runbrick's default)."""

    brick: str | None = None
    """``--brick``: a brick of the grid."""
    radec: tuple[float, float] | None = None
    """``--radec RA DEC``: a custom target instead of a brick."""
    width: int | None = None
    """``--width`` (``-W``) pixels; runbrick's 3600 when None."""
    height: int | None = None
    """``--height`` (``-H``) pixels."""
    pixscale: float | None = None
    """``--pixscale`` arcsec/pixel."""
    zoom: tuple[int, int, int, int] | None = None
    """``--zoom x0 x1 y0 y1``: a sub-image of the W × H grid."""
    bands: tuple[str, ...] | None = None
    """``--bands`` (comma-separated)."""
    survey_dir: Path | None = None
    """``--survey-dir``; None = the release root."""
    run: str | None = None
    """``--run`` (south, north, …): which CCDs the survey's run class keeps."""
    release: int | None = None
    """``--release`` written into the catalogue."""
    threads: int | None = None
    """``--threads``."""
    skip: bool = False
    """``--skip``: exit 0 when the tractor catalogue exists and reads."""
    skip_calibs: bool = False
    """``--skip-calibs``: never make calibs (they come from legacy_zeropoints)."""
    pickle: bool = False
    """``--pickle``: stage pickles in the release's ``pickles/<bri>/``."""
    write_stages: tuple[str, ...] = ()
    """``--write-stage`` (repeated): pickle only these stages."""
    checkpoint: bool = False
    """``--checkpoint``: fitblobs' checkpoint in the release's ``checkpoints/<bri>/``."""
    checkpoint_period: int | None = None
    """``--checkpoint-period`` seconds."""
    stages: tuple[str, ...] = ()
    """``--stage`` (repeated): stages to run even if pickled; none = runbrick's writecat."""
    force_all: bool = False
    """``--force-all``: ignore every pickle (the checkpoint is still read)."""
    bail_out: bool = False
    """``--bail-out``: skip the blobs the checkpoint lacks, flagged BAILOUT."""
    wise: bool = True
    """False is ``--no-wise``: no unWISE forced photometry."""
    outliers: bool = True
    """False is ``--no-outliers``."""
    tycho: bool = True
    """False is ``--no-tycho``: no Tycho-2 reference stars."""
    production: bool = False
    """Add the flag set's production flags (``--skip --skip-calibs --pickle … --checkpoint …``)."""

    def __post_init__(self) -> None:
        """Reject what runbrick would reject, and brick names that are not on the grid."""
        if (self.brick is None) == (self.radec is None):
            raise UsageError("runbrick needs exactly one of a brick and an RA/Dec target")
        if self.brick is not None:
            checked_brick(self.brick)
        if self.radec is not None:
            ra, dec = self.radec
            if not (0 <= ra < 360 and -90 <= dec <= 90):
                raise UsageError(f"target {self.radec!r} is outside the sky")
        width = BRICK_SIZE_PIX if self.width is None else self.width
        height = BRICK_SIZE_PIX if self.height is None else self.height
        if width < 1 or height < 1:
            raise UsageError(f"brick size {width}x{height} must be positive")
        if self.zoom is not None:
            x0, x1, y0, y1 = self.zoom
            if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
                raise UsageError(
                    f"zoom {self.zoom!r} must satisfy 0 <= x0 < x1 <= {width} "
                    f"and 0 <= y0 < y1 <= {height}"
                )
        if self.pixscale is not None and not 0.01 <= self.pixscale <= 60.0:
            raise UsageError(f"pixscale {self.pixscale} arcsec/pixel is out of range")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads {self.threads} must be at least 1")
        if self.bands is not None and (not self.bands or len(set(self.bands)) != len(self.bands)):
            raise UsageError(f"bands {self.bands!r} must be a non-empty list without repeats")
        for stage in (*self.stages, *self.write_stages):
            if stage not in RUNBRICK_STAGES:
                raise UsageError(
                    f"unknown runbrick stage {stage!r}; expected one of "
                    f"{', '.join(RUNBRICK_STAGES)}"
                )
        if self.checkpoint_period is not None and self.checkpoint_period < 0:
            raise UsageError(f"checkpoint period {self.checkpoint_period} s must be >= 0")

    @property
    def brickname(self) -> str:
        """The brick runbrick writes: the grid brick, or ``custom-RRRRRR[p|m]DDDDD``."""
        if self.brick is not None:
            return self.brick
        assert self.radec is not None
        return checked_brick(custom_brickname(*self.radec))

    @classmethod
    def of(cls, brick: str, options: RunbrickOptions, *, wise: bool = True) -> RunbrickCommand:
        """The command of ``runbrick(layout, brick, options)``; ``options.radec`` → ``--radec``."""
        if options.radec is not None and brick != options.brickname:
            raise UsageError(
                f"brick {brick!r} is not the target radec={options.radec!r}, which is "
                f"{options.brickname!r}"
            )
        return cls(
            brick=brick if options.radec is None else None,
            radec=options.radec,
            width=options.width if options.width != BRICK_SIZE_PIX else None,
            height=options.height if options.height != BRICK_SIZE_PIX else None,
            pixscale=options.pixscale if options.pixscale != BRICK_PIXSCALE else None,
            zoom=options.zoom,
            bands=options.bands,
            release=options.release,
            threads=options.threads,
            skip=options.skip,
            pickle=True,
            write_stages=options.write_stages,
            checkpoint=options.checkpoint is not None,
            checkpoint_period=(
                round(options.checkpoint_period) if options.checkpoint is not None else None
            ),
            stages=options.stages if options.stages != ("writecat",) else (),
            force_all=options.force_all,
            bail_out=options.bail_out,
            wise=wise,
            outliers=options.outliers,
        )


def runbrick_pickle_pattern(layout: ReleaseLayout, brick: str) -> str:
    """``--pickle``: the layout's pattern with ``%%(stage)s``, as runbrick substitutes twice.

    runbrick fills ``%(brick)s`` first and the stage later, so the stage's ``%`` is doubled;
    a release root containing ``%`` would be garbled and is refused.
    """
    if "%" in str(layout.root):
        raise UsageError(f"release root {layout.root} contains '%', which --pickle cannot take")
    return layout.pickle_pattern(brick).replace("%(stage)s", "%%(stage)s")


def runbrick_argv(
    install: LegacypipeInstall, flag_set: FlagSet, layout: ReleaseLayout, cmd: RunbrickCommand
) -> list[str]:
    """``python -O <py>/legacypipe/runbrick.py …`` for one brick, in the configured flag set.

    Production: today's scripts add ``--skip --skip-calibs --pickle … --write-stage srcs
    --checkpoint …``; the cookbook's set the same without ``--write-stage srcs`` (every stage
    pickled).
    """
    brick = cmd.brickname
    skip, skip_calibs, pickle, checkpoint = cmd.skip, cmd.skip_calibs, cmd.pickle, cmd.checkpoint
    write_stages = list(cmd.write_stages)
    if cmd.production:
        skip = skip_calibs = pickle = checkpoint = True
        if flag_set is FlagSet.CURRENT and "srcs" not in write_stages:
            write_stages.append("srcs")
    argv = install.py("legacypipe/runbrick.py", "-O")
    if cmd.brick is not None:
        argv += ["--brick", checked_brick(cmd.brick)]
    else:
        assert cmd.radec is not None
        argv += ["--radec", number_arg(cmd.radec[0]), number_arg(cmd.radec[1])]
    if cmd.width is not None:
        argv += ["--width", str(cmd.width)]
    if cmd.height is not None:
        argv += ["--height", str(cmd.height)]
    if cmd.pixscale is not None:
        argv += ["--pixscale", number_arg(cmd.pixscale)]
    if cmd.zoom is not None:
        argv += ["--zoom", *(str(int(v)) for v in cmd.zoom)]
    if cmd.bands is not None:
        argv += ["--bands", ",".join(cmd.bands)]
    survey_dir = cmd.survey_dir if cmd.survey_dir is not None else layout.root
    argv += ["--survey-dir", str(survey_dir), "--outdir", str(layout.root)]
    if cmd.run is not None:
        argv += ["--run", cmd.run]
    if cmd.release is not None:
        argv += ["--release", str(int(cmd.release))]
    if cmd.threads is not None:
        argv += ["--threads", str(cmd.threads)]
    if skip:
        argv.append("--skip")
    if skip_calibs:
        argv.append("--skip-calibs")
    if pickle:
        argv += ["--pickle", runbrick_pickle_pattern(layout, brick)]
    for stage in write_stages:
        argv += ["--write-stage", stage]
    if checkpoint:
        argv += ["--checkpoint", str(layout.checkpoint(brick))]
    if cmd.checkpoint_period is not None:
        argv += ["--checkpoint-period", str(int(cmd.checkpoint_period))]
    for stage in cmd.stages:
        argv += ["--stage", stage]
    if cmd.force_all:
        argv.append("--force-all")
    if cmd.bail_out:
        argv.append("--bail-out")
    if not cmd.wise:
        argv.append("--no-wise")
    if not cmd.outliers:
        argv.append("--no-outliers")
    if not cmd.tycho:
        argv.append("--no-tycho")
    return argv
