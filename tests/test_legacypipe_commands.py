"""legacypipe's command lines: golden argv of the cookbook's example, and the real parsers.

The expectations are written out by hand (the cookbook's worked example: RA 180–181, Dec 32–33,
90Prime g/r and Mosaic z, brick 1804p325), in both flag sets.  The parse checks rebuild each
vendored script's argparse definition from its source (``ast``, no legacypipe import: its
dependencies are heavy) and parse today's commands with it.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import tarfile
from pathlib import Path

import pytest

from lsdr.survey.core.errors import UsageError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.engines.base import MatchOptions, ZeropointOptions
from lsdr.survey.engines.legacypipe.commands import (
    BrickSummaryCommand,
    DepthCutCommand,
    KdTreeCommand,
    LegacypipeCommands,
    MatchCommand,
    MergeCalibsCommand,
    QueueCalibsCommand,
    SweepsCommand,
    UpdateCcdCutsCommand,
    ZeropointsCommand,
    ZeropointsMergeCommand,
)
from lsdr.survey.engines.legacypipe.install import LegacypipeInstall
from lsdr.survey.engines.legacypipe.runbrick import RunbrickCommand
from lsdr.survey.engines.legacypipe.versions import FlagSet, LegacypipeVersion
from lsdr.survey.runbrick.options import RunbrickOptions

VENDOR_TARBALL = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "vendor"
    / "legacypipe-DR11.1.0-28-g93e2d828.tar.gz"
)
CURRENT = "DR11.1.0-28-g93e2d828"
COOKBOOK = "DR6.0"

R = "/data/release"
PY = "/opt/legacypipe/py"
BIN = "/opt/legacypipe/bin"
G_IMAGE = "90prime/CP/V2.3/CP20170218/ksb_170219_071716_ooi_g_ls9.fits.fz"
R_IMAGE = "90prime/CP/V2.3/CP20170218/ksb_170219_072240_ooi_r_ls9.fits.fz"
Z_IMAGE = "mosaic/CP/V4.3/CP20170218/k4m_170219_071003_ooi_zd_ls9.fits.fz"


def commands(version: str, py_dir: str = PY, root: str = R) -> LegacypipeCommands:
    """The builders of a version for a release at ``root`` and legacypipe at ``py_dir``."""
    install = LegacypipeInstall(Path(py_dir))
    return LegacypipeCommands.for_version(install, version, ReleaseLayout(Path(root)))


# -- the cookbook's example, as options (shared by the golden and the parse checks) ------------
def zeropoints_cmd() -> ZeropointsCommand:
    """The cookbook's 90Prime g image, calibs made."""
    return ZeropointsCommand.of(G_IMAGE, ZeropointOptions(run_calibs=True))


def merge_cmd(root: str = R) -> ZeropointsMergeCommand:
    """The 90Prime annotated tables merged."""
    return ZeropointsMergeCommand(
        Path(root, "zpt/zpt-files-90prime.txt"), Path(root, "zpt/survey-ccds-90prime.fits")
    )


def cuts_cmd(root: str = R) -> UpdateCcdCutsCommand:
    """The 90Prime g tables' cuts, without the depth cut."""
    layout = ReleaseLayout(Path(root))
    return UpdateCcdCutsCommand(
        "90prime",
        Path(root, "zpt/survey-ccds-90prime.fits"),
        Path(root, "zpt/ccds-annotated-90prime.fits"),
        layout.survey_ccds("90prime", "g"),
        layout.ccds_annotated("90prime", "g"),
        good_ccd_fraction=0.7,
        depth_cut=False,
    )


def kd_cmd(root: str = R) -> KdTreeCommand:
    """The kd-tree of a merged table."""
    layout = ReleaseLayout(Path(root))
    return KdTreeCommand(layout.survey_ccds("90prime", "g"), layout.survey_ccds_kd)


def queue_cmd() -> QueueCalibsCommand:
    """The bricks of the cookbook's region."""
    return QueueCalibsCommand(180, 181, 32, 33)


def summary_cmd(root: str = R) -> BrickSummaryCommand:
    """The brick summary of RA chunk 180 from brick 1804p325's nexp maps."""
    layout = ReleaseLayout(Path(root))
    nexp = tuple(layout.coadd("1804p325", "nexp", b) for b in "grz")
    return BrickSummaryCommand(layout.brick_summary_chunk("180"), nexp, north=True)


def summary_merge_cmd(root: str = R) -> BrickSummaryCommand:
    """The merge of the brick summary's chunks."""
    layout = ReleaseLayout(Path(root))
    return BrickSummaryCommand(
        layout.brick_summary, (layout.brick_summary_chunk("180"),), merge=True, north=True
    )


def sweeps_cmd(root: str = R) -> SweepsCommand:
    """The 10.0 sweeps."""
    return SweepsCommand("10.0", filelist=Path(root, "state/tractor-files.txt"), numproc=2)


def match_cmd(root: str = R) -> MatchCommand:
    """The SDSS DR16 spectra matched (its columns copied)."""
    return MatchCommand(
        Path("/data/sdss/specObj-dr16.fits"),
        "specObj-dr16",
        filelist=Path(root, "state/tractor-files.txt"),
        tolerance_arcsec=1.5,
        copycols=("MJD", "PLATE", "FIBERID"),
    )


PRODUCTION = RunbrickCommand(
    brick="1804p325", bands=("g", "r", "z"), threads=8, checkpoint_period=600, production=True
)
DEBUG = RunbrickCommand(
    brick="1804p325",
    zoom=(1000, 1400, 2000, 2400),
    bands=("g", "r", "z"),
    threads=2,
    pickle=True,
    write_stages=("srcs", "fitblobs"),
    checkpoint=True,
    checkpoint_period=60,
    stages=("writecat",),
    force_all=True,
    bail_out=True,
    wise=False,
    outliers=False,
    release=10000,
    run="north",
)
CUSTOM = RunbrickCommand(
    radec=(180.5, 32.5), width=250, height=250, pixscale=0.454, checkpoint=True, wise=False
)


# -- golden command lines, today's flag set ----------------------------------------------------
def test_golden_current_pretractor() -> None:
    """Today's zeropoints, merges, cuts, calibs, kd-tree, brick list and depth cut."""
    c = commands(CURRENT)
    assert c.legacy_zeropoints(zeropoints_cmd()) == [
        "python", "-u", "/opt/legacypipe/py/legacyzpts/legacy_zeropoints.py",
        "--camera", "90prime",
        "--image", "90prime/CP/V2.3/CP20170218/ksb_170219_071716_ooi_g_ls9.fits.fz",
        "--survey-dir", "/data/release",
        "--outdir", "/data/release/zpt",
        "--calibdir", "/data/release/calib",
        "--threads", "1",
    ]  # fmt: skip
    assert c.legacy_zeropoints(
        ZeropointsCommand(Z_IMAGE, threads=4, calibs_only=True, keep_single_calibs=True)
    ) == [
        "python", "-u", "/opt/legacypipe/py/legacyzpts/legacy_zeropoints.py",
        "--camera", "mosaic",
        "--image", "mosaic/CP/V4.3/CP20170218/k4m_170219_071003_ooi_zd_ls9.fits.fz",
        "--survey-dir", "/data/release",
        "--outdir", "/data/release/zpt",
        "--calibdir", "/data/release/calib",
        "--threads", "4",
        "--run-calibs-only",
        "--no-delete",
    ]  # fmt: skip
    assert c.legacy_zeropoints(ZeropointsCommand(R_IMAGE, splinesky=False))[-2:] == [
        "1", "--no-splinesky"
    ]  # fmt: skip
    assert c.legacy_zeropoints_merge(merge_cmd()) == [
        "python", "-u", "/opt/legacypipe/py/legacyzpts/legacy_zeropoints_merge.py",
        "--file_list", "/data/release/zpt/zpt-files-90prime.txt",
        "--outname", "/data/release/zpt/survey-ccds-90prime.fits",
    ]  # fmt: skip
    assert c.update_ccd_cuts(cuts_cmd()) == [
        "python", "-u", "/opt/legacypipe/py/legacyzpts/update_ccd_cuts.py",
        "90prime",
        "/data/release/zpt/survey-ccds-90prime.fits",
        "/data/release/zpt/ccds-annotated-90prime.fits",
        "/data/release/survey-ccds-90prime-g.fits.gz",
        "/data/release/ccds-annotated-90prime-g.fits.gz",
        "--good-ccd-fraction", "0.7",
        "--depth-cut",
    ]  # fmt: skip
    assert c.merge_calibs(MergeCalibsCommand((75430090, 75430091), all_found=True)) == [
        "python", "-u", "/opt/legacypipe/py/legacyzpts/merge_calibs.py",
        "--expnum", "75430090,75430091",
        "--all-found",
    ]  # fmt: skip
    assert c.create_kdtrees(kd_cmd()) == [
        "python", "-u", "/opt/legacypipe/py/legacypipe/create_kdtrees.py",
        "/data/release/survey-ccds-90prime-g.fits.gz",
        "/data/release/survey-ccds-dr10.kd.fits",
    ]  # fmt: skip
    assert c.queue_calibs(queue_cmd()) == [
        "python", "-u", "/opt/legacypipe/py/legacypipe/queue_calibs.py",
        "--touching",
        "--minra", "180.0", "--maxra", "181.0", "--mindec", "32.0", "--maxdec", "33.0",
        "--bands", "g,r,z",
    ]  # fmt: skip
    assert c.depth_cut(DepthCutCommand(("1804p325",), margin=1, max_gb_per_band=5)) == [
        "python", "-u", "/opt/legacypipe/py/legacypipe/depthcut.py",
        "--outdir", "/data/release/depthcut",
        "--margin", "1.0",
        "--max-gb-per-band", "5.0",
        "1804p325",
    ]  # fmt: skip


def test_golden_current_runbrick() -> None:
    """Today's runbrick: production, a zoomed debugging rerun, a custom target."""
    c = commands(CURRENT)
    assert c.runbrick(PRODUCTION) == [
        "python", "-O", "/opt/legacypipe/py/legacypipe/runbrick.py",
        "--brick", "1804p325",
        "--bands", "g,r,z",
        "--survey-dir", "/data/release",
        "--outdir", "/data/release",
        "--threads", "8",
        "--skip",
        "--skip-calibs",
        "--pickle", "/data/release/pickles/180/runbrick-1804p325-%%(stage)s.pickle",
        "--write-stage", "srcs",
        "--checkpoint", "/data/release/checkpoints/180/checkpoint-1804p325.pickle",
        "--checkpoint-period", "600",
    ]  # fmt: skip
    assert c.runbrick(DEBUG) == [
        "python", "-O", "/opt/legacypipe/py/legacypipe/runbrick.py",
        "--brick", "1804p325",
        "--zoom", "1000", "1400", "2000", "2400",
        "--bands", "g,r,z",
        "--survey-dir", "/data/release",
        "--outdir", "/data/release",
        "--run", "north",
        "--release", "10000",
        "--threads", "2",
        "--pickle", "/data/release/pickles/180/runbrick-1804p325-%%(stage)s.pickle",
        "--write-stage", "srcs",
        "--write-stage", "fitblobs",
        "--checkpoint", "/data/release/checkpoints/180/checkpoint-1804p325.pickle",
        "--checkpoint-period", "60",
        "--stage", "writecat",
        "--force-all",
        "--bail-out",
        "--no-wise",
        "--no-outliers",
    ]  # fmt: skip
    assert c.runbrick(CUSTOM) == [
        "python", "-O", "/opt/legacypipe/py/legacypipe/runbrick.py",
        "--radec", "180.5", "32.5",
        "--width", "250",
        "--height", "250",
        "--pixscale", "0.454",
        "--survey-dir", "/data/release",
        "--outdir", "/data/release",
        "--checkpoint", "/data/release/checkpoints/cus/checkpoint-custom-180500p32500.pickle",
        "--no-wise",
    ]  # fmt: skip


def test_golden_current_posttractor() -> None:
    """Today's post-processing: maskbits backup, depth, summary, sweeps, matches."""
    c = commands(CURRENT)
    assert c.copymaskbits() == ["python", "-u", "/opt/legacypipe/bin/copymaskbits.py"]
    assert c.depth_histogram() == [
        "python", "-u", "/opt/legacypipe/py/legacyanalysis/depth-histogram.py"
    ]  # fmt: skip
    assert c.brick_summary(summary_cmd()) == [
        "python", "-u", "/opt/legacypipe/py/legacyanalysis/brick-summary.py",
        "-o", "/data/release/state/bricksummary/survey-bricks-180.fits",
        "--north",
        "/data/release/coadd/180/1804p325/legacysurvey-1804p325-nexp-g.fits.fz",
        "/data/release/coadd/180/1804p325/legacysurvey-1804p325-nexp-r.fits.fz",
        "/data/release/coadd/180/1804p325/legacysurvey-1804p325-nexp-z.fits.fz",
    ]  # fmt: skip
    assert c.brick_summary(summary_merge_cmd()) == [
        "python", "-u", "/opt/legacypipe/py/legacyanalysis/brick-summary.py",
        "-o", "/data/release/survey-bricks-dr10.fits.gz",
        "--merge",
        "--north",
        "/data/release/state/bricksummary/survey-bricks-180.fits",
    ]  # fmt: skip
    assert c.generate_sweep_files(sweeps_cmd()) == [
        "python", "-u", "/opt/legacypipe/bin/generate-sweep-files.py",
        "--format", "fits",
        "--filelist", "/data/release/state/tractor-files.txt",
        "--schema", "blocksdr10",
        "--bricksdesc", "/data/release/survey-bricks.fits.gz",
        "--numproc", "2",
        "/data/release/tractor",
        "/data/release/sweep/10.0",
    ]  # fmt: skip
    assert c.match_external_catalog(match_cmd()) == [
        "python", "-u", "/opt/legacypipe/bin/match-external-catalog.py",
        "--format", "fits",
        "--filelist", "/data/release/state/tractor-files.txt",
        "--tolerance", "1.5",
        "/data/sdss/specObj-dr16.fits",
        "/data/release/tractor",
        "/data/release/external/survey-dr10-specObj-dr16.fits",
        "--copycols", "MJD", "PLATE", "FIBERID",
    ]  # fmt: skip


# -- golden command lines, the cookbook's (DR6) flag set ---------------------------------------
def test_golden_cookbook() -> None:
    """The cookbook's (DR6) flag set: every tool."""
    c = commands(COOKBOOK)
    assert c.flag_set is FlagSet.COOKBOOK
    assert c.legacy_zeropoints(zeropoints_cmd()) == [
        "python", "-u", "/opt/legacypipe/py/legacyzpts/legacy_zeropoints.py",
        "--camera", "90prime",
        "--image",
        "/data/release/images/90prime/CP/V2.3/CP20170218/ksb_170219_071716_ooi_g_ls9.fits.fz",
        "--outdir", "/data/release/zpt",
        "--splinesky", "--psf", "--run-calibs",
    ]  # fmt: skip
    assert c.legacy_zeropoints(ZeropointsCommand(Z_IMAGE, run_calibs=False)) == [
        "python", "-u", "/opt/legacypipe/py/legacyzpts/legacy_zeropoints.py",
        "--camera", "mosaic",
        "--image",
        "/data/release/images/mosaic/CP/V4.3/CP20170218/k4m_170219_071003_ooi_zd_ls9.fits.fz",
        "--outdir", "/data/release/zpt",
    ]  # fmt: skip
    assert c.legacy_zeropoints_merge(merge_cmd()) == [
        "python", "-u", "/opt/legacypipe/py/legacyzpts/legacy_zeropoints_merge.py",
        "--file_list", "/data/release/zpt/zpt-files-90prime.txt",
        "--outname", "/data/release/zpt/survey-ccds-90prime.fits",
    ]  # fmt: skip
    assert c.update_ccd_cuts(cuts_cmd()) == [
        "python", "-u", "/opt/legacypipe/py/legacyzpts/update_ccd_cuts.py",
        "90prime",
        "/data/release/zpt/survey-ccds-90prime.fits",
        "/data/release/zpt/ccds-annotated-90prime.fits",
        "/data/release/survey-ccds-90prime-g.fits.gz",
        "/data/release/ccds-annotated-90prime-g.fits.gz",
        "--good-ccd-fraction", "0.7",
        "--depth-cut",
    ]  # fmt: skip
    assert c.merge_calibs(MergeCalibsCommand((75430090,))) == [
        "python", "-u", "/opt/legacypipe/py/legacypipe/merge-calibs.py",
        "--expnum", "75430090",
    ]  # fmt: skip
    assert c.create_kdtrees(kd_cmd()) == [
        "python", "-u", "/opt/legacypipe/py/legacypipe/create_kdtrees.py",
        "/data/release/survey-ccds-90prime-g.fits.gz",
        "/data/release/survey-ccds-dr10.kd.fits",
    ]  # fmt: skip
    assert c.queue_calibs(queue_cmd()) == [
        "python", "-u", "/opt/legacypipe/py/legacypipe/queue-calibs.py",
        "--touching",
        "--minra", "180.0", "--maxra", "181.0", "--mindec", "32.0", "--maxdec", "33.0",
        "--bands", "g,r,z",
    ]  # fmt: skip
    assert c.depth_cut(DepthCutCommand(("1804p325",), margin=1)) == [
        "python", "-u", "/opt/legacypipe/py/legacyanalysis/depth-cut.py",
        "--outdir", "/data/release/depthcut",
        "--margin", "1.0",
        "1804p325",
    ]  # fmt: skip
    assert c.runbrick(PRODUCTION) == [
        "python", "-O", "/opt/legacypipe/py/legacypipe/runbrick.py",
        "--brick", "1804p325",
        "--bands", "g,r,z",
        "--survey-dir", "/data/release",
        "--outdir", "/data/release",
        "--threads", "8",
        "--skip",
        "--skip-calibs",
        "--pickle", "/data/release/pickles/180/runbrick-1804p325-%%(stage)s.pickle",
        "--checkpoint", "/data/release/checkpoints/180/checkpoint-1804p325.pickle",
        "--checkpoint-period", "600",
    ]  # fmt: skip
    assert c.copymaskbits() == ["python", "-u", "/opt/legacypipe/bin/copymaskbits.py"]
    assert c.depth_histogram() == [
        "python", "-u", "/opt/legacypipe/py/legacyanalysis/depth-histogram.py"
    ]  # fmt: skip
    assert c.brick_summary(summary_cmd())[3:5] == [
        "-o", "/data/release/state/bricksummary/survey-bricks-180.fits"
    ]  # fmt: skip
    assert c.generate_sweep_files(SweepsCommand("6.0", schema="blocks")) == [
        "python", "-u", "/opt/legacypipe/bin/generate-sweep-files.py",
        "--format", "fits",
        "--schema", "blocks",
        "--bricksdesc", "/data/release/survey-bricks.fits.gz",
        "/data/release/tractor",
        "/data/release/sweep/6.0",
    ]  # fmt: skip
    assert c.match_external_catalog(match_cmd()) == [
        "python", "-u", "/opt/legacypipe/bin/match-external-catalog.py",
        "--format", "fits",
        "--filelist", "/data/release/state/tractor-files.txt",
        "--tolerance", "1.5",
        "/data/sdss/specObj-dr16.fits",
        "/data/release/tractor",
        "/data/release/external/survey-dr10-specObj-dr16.fits",
        "--copycols", "MJD", "PLATE", "FIBERID",
    ]  # fmt: skip


def test_provenance_and_environment() -> None:
    """A command's provenance record and the environment commands need."""
    c = commands(CURRENT)
    record = c.record(c.runbrick(PRODUCTION))
    assert record.tool == "runbrick.py"
    assert record.as_dict() == {
        "engine": "legacypipe",
        "engine_version": "DR11.1.0-28-g93e2d828",
        "flag_set": "current",
        "tool": "runbrick.py",
        "argv": c.runbrick(PRODUCTION),
    }
    assert c.install.environment(c.layout) == {
        "LEGACY_SURVEY_DIR": "/data/release",
        "PYTHONPATH": "/opt/legacypipe/py",
    }
    assert LegacypipeVersion.parse("DR10.1.3").flag_set is FlagSet.CURRENT
    assert LegacypipeVersion.parse("DR7.1").flag_set is FlagSet.COOKBOOK


def test_from_engine_options() -> None:
    """The commands of the engine's option records."""
    match = MatchCommand.of(
        Path("/e.fits"), "e", MatchOptions(bricks=("1804p325",), radius_arcsec=2.0)
    )
    assert match.tolerance_arcsec == 2.0
    zpt = ZeropointsCommand.of(Z_IMAGE, ZeropointOptions(run_calibs=True, threads=3))
    assert (zpt.camera, zpt.threads, zpt.run_calibs) == ("mosaic", 3, True)
    options = RunbrickOptions(threads=4, checkpoint="x", skip=True, write_stages=("srcs",))
    cmd = RunbrickCommand.of("1804p325", options)
    assert commands(CURRENT).runbrick(cmd) == [
        "python", "-O", "/opt/legacypipe/py/legacypipe/runbrick.py",
        "--brick", "1804p325",
        "--bands", "g,r,z",
        "--survey-dir", "/data/release",
        "--outdir", "/data/release",
        "--release", "10000",
        "--threads", "4",
        "--skip",
        "--pickle", "/data/release/pickles/180/runbrick-1804p325-%%(stage)s.pickle",
        "--write-stage", "srcs",
        "--checkpoint", "/data/release/checkpoints/180/checkpoint-1804p325.pickle",
        "--checkpoint-period", "600",
    ]  # fmt: skip


def test_from_lite_options_with_a_target() -> None:
    """RunbrickOptions.radec becomes --radec with -W/-H; the brick must be the target's name."""
    options = RunbrickOptions(radec=(186.743965, 25.461788), width=250, height=250, bands=("z",))
    cmd = RunbrickCommand.of("custom-186743p25461", options)
    assert (cmd.brick, cmd.radec, cmd.brickname) == (
        None,
        (186.743965, 25.461788),
        "custom-186743p25461",
    )
    argv = commands(CURRENT).runbrick(cmd)
    assert "--brick" not in argv
    i = argv.index("--radec")
    assert argv[i : i + 7] == [
        "--radec", "186.743965", "25.461788", "--width", "250", "--height", "250"
    ]  # fmt: skip
    with pytest.raises(UsageError, match="custom-186743p25461"):
        RunbrickCommand.of("1867p255", options)


# -- bad inputs --------------------------------------------------------------------------------
@pytest.mark.parametrize("brick", ["../1804p325", "180/1804p325", "/tmp/x", "1803p325", ""])
def test_bad_brick(brick: str) -> None:
    """A brick name that is a path, or not on the grid, is a UsageError."""
    with pytest.raises(UsageError):
        RunbrickCommand(brick=brick)
    with pytest.raises(UsageError):
        DepthCutCommand((brick,))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threads": -1},
        {"threads": 0},
        {"zoom": (0, 3601, 0, 100)},
        {"zoom": (100, 100, 0, 100)},
        {"zoom": (-1, 100, 0, 100)},
        {"zoom": (0, 300, 0, 100), "width": 250},
        {"stages": ("nosuchstage",)},
        {"checkpoint_period": -5},
    ],
)
def test_bad_runbrick_options(kwargs: dict[str, object]) -> None:
    """Negative threads, a zoom off the grid, an unknown stage: UsageError."""
    with pytest.raises(UsageError):
        RunbrickCommand(brick="1804p325", **kwargs)  # type: ignore[arg-type]


def test_bad_target_and_other_inputs() -> None:
    """No or two targets, off-sky targets and other bad values: UsageError."""
    with pytest.raises(UsageError):
        RunbrickCommand()
    with pytest.raises(UsageError):
        RunbrickCommand(brick="1804p325", radec=(180.0, 32.0))
    with pytest.raises(UsageError):
        RunbrickCommand(radec=(400.0, 32.0))
    with pytest.raises(UsageError):
        ZeropointsCommand(G_IMAGE, threads=-2)
    with pytest.raises(UsageError):
        ZeropointsCommand("../images/" + G_IMAGE)
    with pytest.raises(UsageError):
        QueueCalibsCommand(180, 181, 33, 32)
    with pytest.raises(UsageError):
        SweepsCommand("10.0", numproc=-1)
    with pytest.raises(UsageError):
        commands(CURRENT).generate_sweep_files(SweepsCommand("../10.0"))
    with pytest.raises(UsageError):
        MatchCommand(Path("/e.fits"), "e", tolerance_arcsec=0)


@pytest.mark.parametrize("version", ["DR8.0", "DR5.2", "v1.2", "", "DR10.1.3; rm -rf /", "main"])
def test_unknown_version(version: str) -> None:
    """A version without a known flag set is a UsageError."""
    with pytest.raises(UsageError):
        LegacypipeVersion.parse(version)
    with pytest.raises(UsageError):
        commands(version)


def test_flags_a_flag_set_lacks() -> None:
    """Asking a flag set for a flag it lacks is a UsageError, not a silent drop."""
    with pytest.raises(UsageError):  # today's legacy_zeropoints always makes missing calibs
        commands(CURRENT).legacy_zeropoints(ZeropointsCommand(G_IMAGE, run_calibs=False))
    with pytest.raises(UsageError):
        commands(COOKBOOK).legacy_zeropoints(ZeropointsCommand(G_IMAGE, threads=4))
    with pytest.raises(UsageError):
        commands(COOKBOOK).depth_cut(DepthCutCommand(("1804p325",), max_gb_per_band=5))


# -- parse checks against the vendored scripts -------------------------------------------------
@pytest.fixture(scope="session")
def vendored_py(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """legacypipe's ``py/`` from the vendored tarball, extracted (the tarball is read only)."""
    if not VENDOR_TARBALL.is_file():
        pytest.fail(f"vendored legacypipe missing: {VENDOR_TARBALL}")
    dest = tmp_path_factory.mktemp("legacypipe-src")
    with tarfile.open(VENDOR_TARBALL) as tar:
        members = [
            m
            for m in tar.getmembers()
            if m.isfile() and m.name.endswith(".py") and "/py/test/" not in m.name
        ]
        tar.extractall(dest, members=members, filter="data")
    py = dest / "legacypipe" / "py"
    assert (py / "legacypipe" / "runbrick.py").is_file()
    return py


_TYPES: dict[str, type] = {"int": int, "float": float, "str": str}


def rebuilt_parser(script: Path) -> tuple[argparse.ArgumentParser, set[str]]:
    """The script's argparse definition rebuilt from its source, and its option strings.

    Takes the function with the most ``add_argument`` calls (``get_parser`` or ``main``) and
    replays its calls with their literal keywords (``type`` of int/float/str kept, ``help``
    and computed defaults dropped).
    """
    tree = ast.parse(script.read_text())
    calls: dict[str, list[ast.Call]] = {}
    for scope in ast.walk(tree):
        if isinstance(scope, ast.FunctionDef):
            found = _add_argument_calls(scope)
            if found:
                calls[scope.name] = found
    if not calls:  # parsed under ``if __name__ == "__main__":`` (create_kdtrees.py)
        calls["<module>"] = _add_argument_calls(tree)
    assert any(calls.values()), f"{script}: no add_argument calls"
    chosen = max(calls.values(), key=len)
    parser = argparse.ArgumentParser(prog=script.name, add_help=False, exit_on_error=False)
    options: set[str] = set()
    for call in chosen:
        names = [a.value for a in call.args if isinstance(a, ast.Constant)]
        kwargs: dict[str, object] = {}
        for kw in call.keywords:
            if kw.arg in (None, "help", "metavar"):
                continue
            if kw.arg == "type":
                if isinstance(kw.value, ast.Name) and kw.value.id in _TYPES:
                    kwargs["type"] = _TYPES[kw.value.id]
                continue
            try:
                kwargs[kw.arg] = ast.literal_eval(kw.value)
            except ValueError:
                continue
        parser.add_argument(*names, **kwargs)  # type: ignore[arg-type]
        options.update(n for n in names if isinstance(n, str) and n.startswith("-"))
    return parser, options


def _add_argument_calls(scope: ast.AST) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(scope)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "add_argument"
    ]


def assert_parses(py: Path, argv: list[str]) -> None:
    """The script exists in the vendored tree and its rebuilt parser takes every argument."""
    script = Path(argv[2])
    assert script.is_file(), f"{script} is not a vendored legacypipe script"
    parser, options = rebuilt_parser(script)
    flags = [a for a in argv[3:] if a.startswith("-") and not _is_number(a)]
    unknown = [f for f in flags if f not in options]
    assert not unknown, f"{script.name} defines no {unknown}"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            parser.parse_args(argv[3:])
        except (SystemExit, argparse.ArgumentError) as exc:
            pytest.fail(f"{script.name} rejects {argv[3:]}: {exc} {err.getvalue()}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_current_commands_parse_with_the_real_parsers(vendored_py: Path, tmp_path: Path) -> None:
    """Every command of today's set parses with the vendored script's own parser."""
    root = str(tmp_path / "release")
    c = commands(CURRENT, py_dir=str(vendored_py), root=root)
    argvs = [
        c.legacy_zeropoints(zeropoints_cmd()),
        c.legacy_zeropoints(
            ZeropointsCommand(Z_IMAGE, threads=4, calibs_only=True, splinesky=False,
                              keep_single_calibs=True)
        ),
        c.legacy_zeropoints_merge(
            ZeropointsMergeCommand(Path(root, "l.txt"), Path(root, "o.fits"), cut=True,
                                   cut_expnum=True, remove_file_prefix="/x/")
        ),
        c.update_ccd_cuts(cuts_cmd(root)),
        c.update_ccd_cuts(
            UpdateCcdCutsCommand("mosaic", *(Path(root, f"{i}.fits") for i in range(4)),
                                 max_seeing=3.0, phrms_cut=0.1, exptime_cut=30.0,
                                 plver_cut=False)
        ),
        c.merge_calibs(
            MergeCalibsCommand((1, 2), ccds=Path(root, "c.fits"), all_found=True,
                               keep_going=True)
        ),
        c.create_kdtrees(kd_cmd(root)),
        c.create_kdtrees(KdTreeCommand(Path(root, "a.fits"), Path(root, "b.kd.fits"), cut=False)),
        c.queue_calibs(queue_cmd()),
        c.queue_calibs(
            QueueCalibsCommand(0, 360, -90, 90, bands=("g",), ccds=Path(root, "c.fits"),
                               ignore_cuts=True)
        ),
        c.depth_cut(
            DepthCutCommand(("1804p325", "1801p325"), margin=1, max_gb_per_band=5,
                            dr10_propids=True)
        ),
        c.runbrick(PRODUCTION),
        c.runbrick(DEBUG),
        c.runbrick(CUSTOM),
        c.runbrick(RunbrickCommand(radec=(10.0, -5.25), zoom=(0, 100, 0, 100))),
        c.brick_summary(summary_cmd(root)),
        c.brick_summary(summary_merge_cmd(root)),
        c.generate_sweep_files(sweeps_cmd(root)),
        c.generate_sweep_files(SweepsCommand("10.1", schema="blocksdr11", mopup=True)),
        c.match_external_catalog(match_cmd(root)),
        c.match_external_catalog(MatchCommand(Path(root, "e.fits"), "e", numproc=3)),
    ]  # fmt: skip
    for argv in argvs:
        assert_parses(vendored_py, argv)
    for argv in (c.copymaskbits(), c.depth_histogram()):
        assert Path(argv[2]).is_file()
        assert len(argv) == 3  # these scripts take no arguments


def test_cookbook_only_scripts_are_not_todays(vendored_py: Path) -> None:
    """The cookbook's script names that today's tree renamed (so they are version-selected)."""
    assert not (vendored_py / "legacypipe" / "queue-calibs.py").exists()
    assert (vendored_py / "legacypipe" / "queue_calibs.py").is_file()
    assert (vendored_py / "legacyanalysis" / "depth-cut.py").is_file()
    assert (vendored_py / "legacypipe" / "depthcut.py").is_file()
