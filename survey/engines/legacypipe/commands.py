"""legacypipe's real command lines, one builder per tool a release runs, as argument lists.

Each builder takes a frozen options record and the release's paths (``ReleaseLayout``) and
returns the ``argv`` legacypipe is invoked with: the interpreter, its flags and the script
under legacypipe's ``py/`` (or ``bin/``) directory first, then the tool's flags for the
configured version's :class:`FlagSet`.  Never a shell string: parameters cannot turn into
shell syntax, and brick names are checked against the grid before they reach a path or flag.
runbrick's command is in ``runbrick.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsdr.survey.core.cameras import camera_of_image
from lsdr.survey.core.errors import UsageError
from lsdr.survey.core.layout import ReleaseLayout, checked_brick, image_relpath
from lsdr.survey.engines.base import MatchOptions, ZeropointOptions
from lsdr.survey.engines.legacypipe.install import LegacypipeInstall, number_arg
from lsdr.survey.engines.legacypipe.runbrick import RunbrickCommand, runbrick_argv
from lsdr.survey.engines.legacypipe.versions import ENGINE_NAME, FlagSet, LegacypipeVersion

ZEROPOINT_CAMERAS = (
    "decam",
    "mosaic",
    "90prime",
    "megaprime",
    "hsc",
    "panstarrs",
    "wiro",
    "suprimecam",
    "lsstcomcam",
    "comcam",
    "nisp",
    "vis",
    "quicklook",
)
"""``legacy_zeropoints.py --camera`` choices (today's parser)."""
UPDATE_CUTS_CAMERAS = ("decam", "90prime", "mosaic")
"""Cameras ``update_ccd_cuts.py`` knows."""
SWEEP_SCHEMAS = ("blocks", "blocksdr10", "blocksdr11", "ra", "dec")
"""``generate-sweep-files.py --schema`` choices: 10°×5° boxes (DR9), 5°×5° (DR10, DR11), …."""


# -- what a built command records ----------------------------------------------------------
@dataclass(frozen=True)
class CommandRecord:
    """Provenance of one command: the engine, the version it was built for, tool and argv."""

    tool: str
    """The script's file name (``runbrick.py``)."""
    version: str
    """legacypipe's ``git describe`` the flags were chosen for."""
    flag_set: FlagSet
    """The flag set of that version."""
    argv: tuple[str, ...]
    """The command line."""
    engine: str = ENGINE_NAME
    """The engine name (``legacypipe``)."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able form for a unit's provenance sidecar."""
        return {
            "engine": self.engine,
            "engine_version": self.version,
            "flag_set": str(self.flag_set),
            "tool": self.tool,
            "argv": list(self.argv),
        }


# -- options of each tool ---------------------------------------------------------------------
@dataclass(frozen=True)
class ZeropointsCommand:
    """One image through ``legacy_zeropoints.py``: zeropoints, and the calibs it lacks."""

    image: str
    """The image, relative to ``images/`` (as in the CCD tables)."""
    camera: str | None = None
    """``--camera``; None = from the CP file-name prefix (``ksb_`` → 90prime)."""
    threads: int = 1
    """``--threads``: processes over the image's HDUs (today's flag set)."""
    run_calibs: bool = True
    """Make the PsfEx and sky calibs the image lacks (the cookbook's ``--psf --run-calibs``)."""
    calibs_only: bool = False
    """``--run-calibs-only``: calibs without zeropoints (today's flag set)."""
    splinesky: bool = True
    """Spline sky (the cookbook's ``--splinesky``; today's default, ``--no-splinesky`` off)."""
    keep_single_calibs: bool = False
    """``--no-delete``: keep the per-CCD calibs after merging them (today's flag set)."""

    def __post_init__(self) -> None:
        """Reject an image outside ``images/``, an unknown camera or threads below one."""
        image_relpath(self.image)
        camera = self.camera if self.camera is not None else camera_of_image(self.image).name
        if camera not in ZEROPOINT_CAMERAS:
            raise UsageError(
                f"legacy_zeropoints camera {camera!r}: expected one of "
                f"{', '.join(ZEROPOINT_CAMERAS)}"
            )
        object.__setattr__(self, "camera", camera)
        if self.threads < 1:
            raise UsageError(f"threads {self.threads} must be at least 1")

    @classmethod
    def of(cls, image: str, options: ZeropointOptions) -> ZeropointsCommand:
        """The command of the engine's ``zeropoints(layout, image, options)``."""
        return cls(image, threads=options.threads, run_calibs=options.run_calibs)


@dataclass(frozen=True)
class ZeropointsMergeCommand:
    """``legacy_zeropoints_merge.py``: the per-image tables stacked into one table."""

    file_list: Path
    """``--file_list``: a text file naming the ``-annotated.fits`` tables, one a line."""
    outname: Path
    """``--outname``: the merged table (written uncompressed)."""
    cut: bool = False
    """``--cut``: keep rows with ``ccd_cuts == 0`` only."""
    cut_expnum: bool = False
    """``--cut-expnum``: drop rows with ``expnum == 0``."""
    remove_file_prefix: str | None = None
    """``--remove-file-prefix``: strip this from ``image_filename``."""


@dataclass(frozen=True)
class UpdateCcdCutsCommand:
    """``update_ccd_cuts.py``: the ``ccd_cuts`` bits of a camera's two CCD tables."""

    camera: str
    """decam, 90prime or mosaic."""
    survey_ccds: Path
    """The survey-ccds table in."""
    ccds_annotated: Path
    """The ccds-annotated table in."""
    survey_ccds_out: Path
    """The survey-ccds table out."""
    ccds_annotated_out: Path
    """The ccds-annotated table out."""
    good_ccd_fraction: float | None = None
    """``--good-ccd-fraction`` (legacypipe's 0.7 when None)."""
    max_seeing: float | None = None
    """``--max-seeing`` arcsec."""
    phrms_cut: float | None = None
    """``--phrms-cut`` mag."""
    exptime_cut: float | None = None
    """``--exptime-cut`` s."""
    depth_cut: bool = True
    """Apply the depth cut bit; False is ``--depth-cut`` (the flag *disables* it)."""
    plver_cut: bool = True
    """Apply the plver bit; False is ``--plver`` (the flag *disables* it)."""

    def __post_init__(self) -> None:
        """Reject a camera the script does not know."""
        if self.camera not in UPDATE_CUTS_CAMERAS:
            raise UsageError(
                f"update_ccd_cuts camera {self.camera!r}: expected one of "
                f"{', '.join(UPDATE_CUTS_CAMERAS)}"
            )


@dataclass(frozen=True)
class MergeCalibsCommand:
    """The merge-calibs script: per-CCD PsfEx and sky files stacked per exposure."""

    expnums: tuple[int, ...]
    """``--expnum``: the exposures (comma-separated on the command line)."""
    ccds: Path | None = None
    """``--ccds``: the CCD table to find them in; None = the survey dir's."""
    all_found: bool = False
    """``--all-found``: write only when every CCD's file is there."""
    keep_going: bool = False
    """``--continue``: go on past a bad exposure."""

    def __post_init__(self) -> None:
        """Reject an empty or non-positive exposure list."""
        if not self.expnums or any(int(e) < 1 for e in self.expnums):
            raise UsageError(f"expnums {self.expnums!r} must be a non-empty list of positives")


@dataclass(frozen=True)
class KdTreeCommand:
    """``create_kdtrees.py``: the kd-tree CCD file runbrick reads first."""

    ccds: Path
    """The merged survey-ccds table in."""
    out: Path
    """The ``.kd.fits`` file out."""
    cut: bool = True
    """Keep ``ccd_cuts == 0`` rows only; False is ``--no-cut``."""


@dataclass(frozen=True)
class QueueCalibsCommand:
    """``queue_calibs.py --touching``: the bricks of an RA/Dec box touched by good CCDs."""

    ra_min: float
    """``--minra``."""
    ra_max: float
    """``--maxra``."""
    dec_min: float
    """``--mindec`` (always given: the script's own default box is Dec −25..40)."""
    dec_max: float
    """``--maxdec``."""
    bands: tuple[str, ...] = ("g", "r", "z")
    """``--bands``."""
    ccds: Path | None = None
    """``--ccds``: the CCD table; None = the survey dir's."""
    ignore_cuts: bool = False
    """``--ignore_cuts``: use CCDs whatever their ``ccd_cuts``."""

    def __post_init__(self) -> None:
        """Reject a box outside the sky or empty in Dec, and an empty band list."""
        if not (0 <= self.ra_min <= 360 and 0 <= self.ra_max <= 360):
            raise UsageError(f"RA {self.ra_min}..{self.ra_max} must be within 0..360")
        if not -90 <= self.dec_min < self.dec_max <= 90:
            raise UsageError(f"Dec {self.dec_min}..{self.dec_max} must be an interval in -90..90")
        if not self.bands:
            raise UsageError("no bands")


@dataclass(frozen=True)
class DepthCutCommand:
    """The depth-cut script: per brick, the CCDs needed to reach the target depth."""

    bricks: tuple[str, ...]
    """The bricks (positional)."""
    margin: float | None = None
    """``--margin`` mag over the target depths (production: 1)."""
    max_gb_per_band: float | None = None
    """``--max-gb-per-band`` (today's flag set; production: 5)."""
    dr10_propids: bool = False
    """``--dr10-propids``: keep DR10's proposal ids whatever their depth (today's set)."""

    def __post_init__(self) -> None:
        """Reject an empty brick list and names not on the grid."""
        if not self.bricks:
            raise UsageError("no bricks for the depth cut")
        for brick in self.bricks:
            checked_brick(brick)


@dataclass(frozen=True)
class BrickSummaryCommand:
    """``brick-summary.py``: per-brick summary rows from nexp maps, or their merge."""

    out: Path
    """``-o``: the summary table."""
    files: tuple[Path, ...]
    """The ``-nexp-<band>.fits.fz`` maps, or the partial summaries with ``merge``."""
    merge: bool = False
    """``--merge``: merge partial summaries (adds brickid, area, …)."""
    north: bool = False
    """``--north``: the grz north (else griz)."""
    plot: bool = False
    """``--plot``: the summary plots."""

    def __post_init__(self) -> None:
        """Reject an empty input list."""
        if not self.files:
            raise UsageError("no input files for brick-summary")


@dataclass(frozen=True)
class SweepsCommand:
    """``generate-sweep-files.py``: the sweep files of a release's tractor catalogues."""

    version: str
    """The sweep version directory (``10.0``: ``sweep/10.0/``)."""
    filelist: Path | None = None
    """``--filelist``: the tractor files to read; None = all under ``tractor/``."""
    schema: str = "blocksdr10"
    """``--schema``: the box decomposition."""
    numproc: int | None = None
    """``--numproc``: processes; None = the script's (OMP_NUM_THREADS or all cores)."""
    mopup: bool = False
    """``--mopup``: leave existing sweep files alone."""

    def __post_init__(self) -> None:
        """Reject an unknown schema and a negative process count."""
        if self.schema not in SWEEP_SCHEMAS:
            raise UsageError(
                f"sweep schema {self.schema!r}: expected one of {', '.join(SWEEP_SCHEMAS)}"
            )
        _check_numproc(self.numproc)


@dataclass(frozen=True)
class MatchCommand:
    """``match-external-catalog.py``: an external catalogue matched to primary objects."""

    external: Path
    """The external catalogue (FITS)."""
    name: str
    """Its short name in the output, ``external/survey-<dr>-<name>.fits``."""
    filelist: Path | None = None
    """``--filelist``: the tractor files to match against; None = all under ``tractor/``."""
    tolerance_arcsec: float = 1.5
    """``--tolerance``: the match radius, arcsec."""
    copycols: tuple[str, ...] = ()
    """``--copycols``: external columns copied into the output."""
    numproc: int | None = None
    """``--numproc``."""

    def __post_init__(self) -> None:
        """Reject a radius that matches nothing and a negative process count."""
        if not self.tolerance_arcsec > 0:
            raise UsageError(f"match tolerance {self.tolerance_arcsec} arcsec must be positive")
        _check_numproc(self.numproc)

    @classmethod
    def of(
        cls, external: Path, name: str, options: MatchOptions, filelist: Path | None = None
    ) -> MatchCommand:
        """The command of the engine's ``match_external`` (its radius; bricks via filelist)."""
        return cls(external, name, filelist=filelist, tolerance_arcsec=options.radius_arcsec)


# -- the builders -----------------------------------------------------------------------------
@dataclass(frozen=True)
class LegacypipeCommands:
    """Builds every tool's command for one legacypipe checkout and version."""

    install: LegacypipeInstall
    """Where legacypipe is."""
    version: LegacypipeVersion
    """Which version it is (so which flags its scripts take)."""
    layout: ReleaseLayout
    """The release the commands read and write."""

    @classmethod
    def for_version(
        cls, install: LegacypipeInstall, version: str, layout: ReleaseLayout
    ) -> LegacypipeCommands:
        """The builders of a version named by its ``git describe`` (unknown: UsageError)."""
        return cls(install, LegacypipeVersion.parse(version), layout)

    @property
    def flag_set(self) -> FlagSet:
        """The flag set of the configured version."""
        return self.version.flag_set

    def record(self, argv: Sequence[str]) -> CommandRecord:
        """The provenance record of a command built here."""
        script = next((a for a in argv if a.endswith(".py")), argv[0])
        return CommandRecord(Path(script).name, self.version.describe, self.flag_set, tuple(argv))

    # legacyzpts ----------------------------------------------------------------------------
    def legacy_zeropoints(self, cmd: ZeropointsCommand) -> list[str]:
        """``legacy_zeropoints.py`` on one image.

        Today: the image relative to ``<survey-dir>/images/``; missing calibs are always made
        (there is no flag to forbid it).  Cookbook: the image's full path and the calibs only
        with ``--splinesky --psf --run-calibs``.
        """
        layout = self.layout
        camera = str(cmd.camera)
        head = self.install.py("legacyzpts/legacy_zeropoints.py", "-u")
        zpt_dir = _zpt_dir(layout, cmd.image)
        if self.flag_set is FlagSet.COOKBOOK:
            for flag, used in (
                ("--threads", cmd.threads != 1),
                ("--run-calibs-only", cmd.calibs_only),
                ("--no-delete", cmd.keep_single_calibs),
            ):
                if used:
                    raise UsageError(f"legacy_zeropoints of the cookbook's flag set has no {flag}")
            argv = [
                *head,
                "--camera",
                camera,
                "--image",
                str(layout.image(cmd.image)),
                "--outdir",
                str(zpt_dir),
            ]
            if cmd.run_calibs:
                argv += [*(["--splinesky"] if cmd.splinesky else []), "--psf", "--run-calibs"]
            return argv
        if not cmd.run_calibs:
            raise UsageError(
                "today's legacy_zeropoints makes every calib an image lacks: run_calibs=False "
                "has no flag (make the calibs first, or run them)"
            )
        argv = [
            *head,
            "--camera",
            camera,
            "--image",
            str(image_relpath(cmd.image)),
            "--survey-dir",
            str(layout.root),
            "--outdir",
            str(zpt_dir),
            "--calibdir",
            str(layout.calib_dir),
            "--threads",
            str(cmd.threads),
        ]
        if cmd.calibs_only:
            argv.append("--run-calibs-only")
        if not cmd.splinesky:
            argv.append("--no-splinesky")
        if cmd.keep_single_calibs:
            argv.append("--no-delete")
        return argv

    def legacy_zeropoints_merge(self, cmd: ZeropointsMergeCommand) -> list[str]:
        """``legacy_zeropoints_merge.py``: the images' tables into one (same in both sets)."""
        argv = [
            *self.install.py("legacyzpts/legacy_zeropoints_merge.py", "-u"),
            "--file_list",
            str(cmd.file_list),
            "--outname",
            str(cmd.outname),
        ]
        if cmd.cut:
            argv.append("--cut")
        if cmd.cut_expnum:
            argv.append("--cut-expnum")
        if cmd.remove_file_prefix is not None:
            argv += ["--remove-file-prefix", cmd.remove_file_prefix]
        return argv

    def update_ccd_cuts(self, cmd: UpdateCcdCutsCommand) -> list[str]:
        """``update_ccd_cuts.py``: the ``ccd_cuts`` bits (legacy_zeropoints sets 0x1 everywhere)."""
        argv = [
            *self.install.py("legacyzpts/update_ccd_cuts.py", "-u"),
            cmd.camera,
            str(cmd.survey_ccds),
            str(cmd.ccds_annotated),
            str(cmd.survey_ccds_out),
            str(cmd.ccds_annotated_out),
        ]
        for flag, value in (
            ("--good-ccd-fraction", cmd.good_ccd_fraction),
            ("--max-seeing", cmd.max_seeing),
            ("--phrms-cut", cmd.phrms_cut),
            ("--exptime-cut", cmd.exptime_cut),
        ):
            if value is not None:
                argv += [flag, number_arg(value)]
        if not cmd.depth_cut:
            argv.append("--depth-cut")
        if not cmd.plver_cut:
            argv.append("--plver")
        return argv

    def merge_calibs(self, cmd: MergeCalibsCommand) -> list[str]:
        """The merge-calibs script on some exposures (its survey dir is LEGACY_SURVEY_DIR).

        Today ``py/legacyzpts/merge_calibs.py``; the cookbook's ``py/legacypipe/merge-calibs.py``.
        """
        script = (
            "legacypipe/merge-calibs.py"
            if self.flag_set is FlagSet.COOKBOOK
            else "legacyzpts/merge_calibs.py"
        )
        expnums = ",".join(str(int(e)) for e in cmd.expnums)
        argv = [*self.install.py(script, "-u"), "--expnum", expnums]
        if cmd.ccds is not None:
            argv += ["--ccds", str(cmd.ccds)]
        if cmd.all_found:
            argv.append("--all-found")
        if cmd.keep_going:
            argv.append("--continue")
        return argv

    def create_kdtrees(self, cmd: KdTreeCommand) -> list[str]:
        """``create_kdtrees.py``: the ``.kd.fits`` CCD file (needs astrometry.net's startree)."""
        argv = self.install.py("legacypipe/create_kdtrees.py", "-u")
        if not cmd.cut:
            argv.append("--no-cut")
        return [*argv, str(cmd.ccds), str(cmd.out)]

    def queue_calibs(self, cmd: QueueCalibsCommand) -> list[str]:
        """``queue_calibs.py --touching`` (cookbook: ``queue-calibs.py``): brick names on stdout."""
        script = (
            "legacypipe/queue-calibs.py"
            if self.flag_set is FlagSet.COOKBOOK
            else "legacypipe/queue_calibs.py"
        )
        argv = [
            *self.install.py(script, "-u"),
            "--touching",
            "--minra",
            number_arg(cmd.ra_min),
            "--maxra",
            number_arg(cmd.ra_max),
            "--mindec",
            number_arg(cmd.dec_min),
            "--maxdec",
            number_arg(cmd.dec_max),
            "--bands",
            ",".join(cmd.bands),
        ]
        if cmd.ccds is not None:
            argv += ["--ccds", str(cmd.ccds)]
        if cmd.ignore_cuts:
            argv.append("--ignore_cuts")
        return argv

    def depth_cut(self, cmd: DepthCutCommand) -> list[str]:
        """The depth cut of some bricks into ``depthcut/<bri>/ccds-<brick>.fits``.

        Today ``py/legacypipe/depthcut.py``; the cookbook's ``py/legacyanalysis/depth-cut.py``
        (no ``--max-gb-per-band``, no ``--dr10-propids``).
        """
        outdir = str(self.layout.depthcut_dir)
        if self.flag_set is FlagSet.COOKBOOK:
            if cmd.max_gb_per_band is not None or cmd.dr10_propids:
                raise UsageError(
                    "depth-cut.py of the cookbook's flag set has no "
                    "--max-gb-per-band or --dr10-propids"
                )
            argv = [*self.install.py("legacyanalysis/depth-cut.py", "-u"), "--outdir", outdir]
        else:
            argv = [*self.install.py("legacypipe/depthcut.py", "-u"), "--outdir", outdir]
        if cmd.margin is not None:
            argv += ["--margin", number_arg(cmd.margin)]
        if cmd.max_gb_per_band is not None:
            argv += ["--max-gb-per-band", number_arg(cmd.max_gb_per_band)]
        if cmd.dr10_propids:
            argv.append("--dr10-propids")
        return [*argv, *(checked_brick(b) for b in cmd.bricks)]

    # runbrick ------------------------------------------------------------------------------
    def runbrick(self, cmd: RunbrickCommand) -> list[str]:
        """``runbrick.py`` on one brick (see :func:`~.runbrick.runbrick_argv`)."""
        return runbrick_argv(self.install, self.flag_set, self.layout, cmd)

    # post-processing -----------------------------------------------------------------------
    def copymaskbits(self) -> list[str]:
        """``bin/copymaskbits.py``: backs up maskbits before bright neighbours (DR7).

        It takes no arguments: its directories are written into the script (NERSC's DR7).
        """
        return self.install.bin("copymaskbits.py", "-u")

    def depth_histogram(self) -> list[str]:
        """``depth-histogram.py``: takes no arguments (its release paths are in the script)."""
        return self.install.py("legacyanalysis/depth-histogram.py", "-u")

    def brick_summary(self, cmd: BrickSummaryCommand) -> list[str]:
        """``brick-summary.py`` (reads ``survey-bricks.fits.gz`` from its working directory)."""
        argv = [*self.install.py("legacyanalysis/brick-summary.py", "-u"), "-o", str(cmd.out)]
        if cmd.merge:
            argv.append("--merge")
        if cmd.north:
            argv.append("--north")
        if cmd.plot:
            argv.append("--plot")
        return [*argv, *(str(f) for f in cmd.files)]

    def generate_sweep_files(self, cmd: SweepsCommand) -> list[str]:
        """``generate-sweep-files.py``: ``tractor/`` into ``sweep/<version>/``."""
        layout = self.layout
        argv = [*self.install.bin("generate-sweep-files.py", "-u"), "--format", "fits"]
        if cmd.filelist is not None:
            argv += ["--filelist", str(cmd.filelist)]
        argv += ["--schema", cmd.schema, "--bricksdesc", str(layout.survey_bricks)]
        if cmd.numproc is not None:
            argv += ["--numproc", str(cmd.numproc)]
        if cmd.mopup:
            argv.append("--mopup")
        return [*argv, str(layout.tractor_dir), str(layout.sweep_dir(cmd.version))]

    def match_external_catalog(self, cmd: MatchCommand) -> list[str]:
        """``match-external-catalog.py``: a catalogue into ``external/survey-<dr>-<name>.fits``."""
        layout = self.layout
        argv = [*self.install.bin("match-external-catalog.py", "-u"), "--format", "fits"]
        if cmd.filelist is not None:
            argv += ["--filelist", str(cmd.filelist)]
        argv += ["--tolerance", number_arg(cmd.tolerance_arcsec)]
        if cmd.numproc is not None:
            argv += ["--numproc", str(cmd.numproc)]
        argv += [str(cmd.external), str(layout.tractor_dir), str(layout.external_match(cmd.name))]
        if cmd.copycols:
            argv += ["--copycols", *cmd.copycols]
        return argv


def _zpt_dir(layout: ReleaseLayout, image: str) -> Path:
    """legacy_zeropoints' ``--outdir``: where ``<imgdir>/<base>-annotated.fits`` go under."""
    annotated = layout.zpt_annotated(image)
    return annotated.parents[len(image_relpath(image).parent.parts)]


def _check_numproc(numproc: int | None) -> None:
    if numproc is not None and numproc < 0:
        raise UsageError(f"numproc {numproc} must be >= 0")
