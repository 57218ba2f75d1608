"""Release paths follow legacypipe's names, and nothing unvalidated becomes a path."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsdr.survey.core.errors import BrickNameError, UsageError
from lsdr.survey.core.layout import ReleaseLayout, StateLayout

IMG = "90prime/CP/V2.3/CP20170429/ksb_170430_055945_ooi_r_ls9.fits.fz"


@pytest.fixture
def layout(tmp_path: Path) -> ReleaseLayout:
    """A layout rooted in a temporary directory."""
    return ReleaseLayout(tmp_path, dr="dr10")


def rel(layout: ReleaseLayout, path: Path | str) -> str:
    """A path relative to the release root, as text."""
    return str(Path(path).relative_to(layout.root))


def test_brick_products(layout: ReleaseLayout):
    """Per-brick products have legacypipe's directory and file names."""
    b = "1804p325"
    assert rel(layout, layout.tractor(b)) == "tractor/180/tractor-1804p325.fits"
    assert rel(layout, layout.tractor_i(b)) == "tractor-i/180/tractor-i-1804p325.fits"
    assert rel(layout, layout.brick_checksums(b)) == "tractor/180/brick-1804p325.sha256sum"
    assert (
        rel(layout, layout.coadd(b, "image", "r"))
        == "coadd/180/1804p325/legacysurvey-1804p325-image-r.fits.fz"
    )
    assert (
        rel(layout, layout.coadd_maskbits(b))
        == "coadd/180/1804p325/legacysurvey-1804p325-maskbits.fits.fz"
    )
    assert rel(layout, layout.coadd_jpeg(b, "resid")).endswith("legacysurvey-1804p325-resid.jpg")
    assert rel(layout, layout.metrics(b, "blobs")) == "metrics/180/blobs-1804p325.fits.gz"
    assert rel(layout, layout.brick_log(b)) == "logs/180/1804p325.log"
    assert rel(layout, layout.checkpoint(b)) == "checkpoints/180/checkpoint-1804p325.pickle"
    assert (
        rel(layout, layout.stage_pickle(b, "srcs")) == "pickles/180/runbrick-1804p325-srcs.pickle"
    )
    assert layout.pickle_pattern(b).endswith("pickles/180/runbrick-1804p325-%(stage)s.pickle")


def test_custom_bricks_use_cus(layout: ReleaseLayout):
    """runbrick --radec bricks (custom-…) live under the 'cus' prefix."""
    assert rel(layout, layout.tractor("custom-186743p25461")) == (
        "tractor/cus/tractor-custom-186743p25461.fits"
    )


@pytest.mark.parametrize("name", ["../1804p325", "1804p325/../../etc", "/tmp/x", "1803p325"])
def test_paths_refuse_bad_bricks(layout: ReleaseLayout, name: str):
    """A brick name that is not on the grid never becomes a path."""
    with pytest.raises(BrickNameError):
        layout.tractor(name)
    with pytest.raises(BrickNameError):
        layout.coadd_dir(name)


def test_calib_and_zpt_paths(layout: ReleaseLayout):
    """Calibration and zeropoint files follow legacypipe's DR9+ layout."""
    d = "90prime/CP/V2.3/CP20170429"
    base = "ksb_170430_055945_ooi_r_ls9"
    assert rel(layout, layout.psfex_single(IMG, "CCD4")) == (
        f"calib/psfex-single/{d}/{base}/{base}-CCD4-psfex.fits"
    )
    assert rel(layout, layout.sky_single(IMG, "CCD4")) == (
        f"calib/sky-single/{d}/{base}/{base}-CCD4-splinesky.fits"
    )
    assert rel(layout, layout.psfex_merged(IMG)) == f"calib/psfex/{d}/{base}-psfex.fits"
    assert rel(layout, layout.sky_merged(IMG)) == f"calib/sky/{d}/{base}-splinesky.fits"
    assert rel(layout, layout.zpt_annotated(IMG)) == f"zpt/{d}/{base}-annotated.fits"
    assert rel(layout, layout.zpt_photom(IMG)) == f"zpt/{d}/{base}-photom.fits"
    assert rel(layout, layout.image_companion(IMG, "ood")) == (
        f"images/{d}/ksb_170430_055945_ood_r_ls9.fits.fz"
    )


def test_tables_and_release_products(layout: ReleaseLayout):
    """CCD tables, sweeps, external matches and checksum names follow the release convention."""
    assert layout.survey_ccds("90prime", "g").name == "survey-ccds-90prime-g.fits.gz"
    assert layout.ccds_annotated("mosaic", "z").name == "ccds-annotated-mosaic-z.fits.gz"
    assert layout.survey_ccds_kd.name == "survey-ccds-dr10.kd.fits"
    assert rel(layout, layout.sweep("10.0", 180, 30, 185, 35)) == (
        "sweep/10.0/sweep-180p030-185p035.fits"
    )
    assert layout.sweep("10.0", 0, -90, 5, -85).name == "sweep-000m090-005m085.fits"
    assert layout.sweep("10.0", 180, -5, 185, 0).name == "sweep-180m005-185p000.fits"
    assert layout.external_match("dr12Q").name == "survey-dr10-dr12Q.fits"
    assert layout.log_tarball("180").name == "legacysurvey_dr10_logs_180.tar.gz"
    assert layout.gaia_chunk(799).name == "chunk-00799.fits"


def test_release_directories_and_state(layout: ReleaseLayout):
    """Top-level directories, backups, plots and orchestration state keep their names."""
    b = "1804p325"
    assert [rel(layout, p) for p in (layout.tractor_dir, layout.coadds_dir, layout.sweeps_dir)] == [
        "tractor",
        "coadd",
        "sweep",
    ]
    assert rel(layout, layout.calib_dir) == "calib"
    assert rel(layout, layout.tractor_orig(b)) == "tractor/180/tractor-1804p325-orig.fits"
    assert rel(layout, layout.coadd_maskbits_orig(b)) == (
        "coadd/180/1804p325/legacysurvey-1804p325-maskbits-orig.fits.fz"
    )
    assert rel(layout, layout.logs_dir) == "logs"
    assert rel(layout, layout.brick_log_dir("180")) == "logs/180"
    assert rel(layout, layout.brick_log(b)) == "logs/180/1804p325.log"
    assert rel(layout, layout.depth_histogram_plot) == "plots/depth-histogram.png"
    assert rel(layout, layout.brick_summary_plot("nexp")) == "plots/brick-summary-nexp.png"
    assert rel(layout, layout.release_summary) == "state/release-summary.md"
    assert rel(layout, layout.config_file) == "lsdr.yaml"
    assert rel(layout, layout.ledger_db) == "state/ledger.sqlite"
    assert [rel(layout, p) for p in layout.depthcut_linked] == [
        "images",
        "calib",
        "survey-bricks.fits.gz",
        "gaia",
        "tycho2.kd.fits",
    ]
    state = layout.state
    assert state.root == layout.root / "state"
    names = [
        state.ledger_db,
        state.prefect_home,
        state.prefect_profiles,
        state.server_record,
        state.server_log,
        state.server_lock,
        state.server_database,
        state.run_logs_dir,
        state.run_logging_config,
    ]
    assert [rel(layout, p) for p in names] == [
        "state/ledger.sqlite",
        "state/prefect",
        "state/prefect/profiles.toml",
        "state/server.json",
        "state/prefect-server.log",
        "state/server.lock",
        "state/prefect.db",
        "state/logs",
        "state/logs/logging.yml",
    ]


def test_state_layout_keeps_a_relative_root():
    """A state directory given relative stays relative (the ledger URL is built from it)."""
    assert StateLayout(Path("some/state")).ledger_db == Path("some/state/ledger.sqlite")


def test_listings(layout: ReleaseLayout):
    """The reference chunks and log tarballs are listed sorted; none without their directory."""
    assert layout.gaia_chunks() == [] and layout.log_tarballs() == []
    (layout.root / "gaia").mkdir()
    for name in ("chunk-00800.fits", "chunk-00799.fits", "other.fits"):
        (layout.root / "gaia" / name).touch()
    assert [p.name for p in layout.gaia_chunks()] == ["chunk-00799.fits", "chunk-00800.fits"]
    (layout.root / "logs" / "180").mkdir(parents=True)
    for name in ("b.tar.gz", "a.tar.gz", "180/x.tar.gz"):
        (layout.root / "logs" / name).touch()
    assert [rel(layout, p) for p in layout.log_tarballs()] == ["logs/a.tar.gz", "logs/b.tar.gz"]


def test_provenance_simulation_and_plot_paths(layout: ReleaseLayout):
    """Sidecars under state/provenance/<phase>/, the simulation record, the plots listed sorted."""
    assert rel(layout, layout.provenance("tractor", "ab12")) == "state/provenance/tractor/ab12.json"
    assert rel(layout, layout.simulation_record) == "truth/simulation.json"
    assert layout.provenance_records() == [] and layout.plots() == []
    for phase, name in (("tractor", "b.json"), ("merge", "a.json"), ("merge", "c.txt")):
        (layout.root / "state" / "provenance" / phase).mkdir(parents=True, exist_ok=True)
        (layout.root / "state" / "provenance" / phase / name).touch()
    assert [rel(layout, p) for p in layout.provenance_records()] == [
        "state/provenance/merge/a.json",
        "state/provenance/tractor/b.json",
    ]
    (layout.root / "plots").mkdir()
    for name in ("z.png", "a.png", "notes.txt"):
        (layout.root / "plots" / name).touch()
    assert [rel(layout, p) for p in layout.plots()] == ["plots/a.png", "plots/z.png"]


@pytest.mark.parametrize("image", ["../x_ooi_r.fits.fz", "/abs/x_ooi_r.fits.fz", ""])
def test_image_paths_stay_inside_images(layout: ReleaseLayout, image: str):
    """Image names that would escape images/ are refused."""
    with pytest.raises(UsageError):
        layout.image(image)


def test_bad_components(layout: ReleaseLayout):
    """Unknown product kinds and path-like CCD or band names are refused."""
    with pytest.raises(UsageError):
        layout.coadd("1804p325", "bogus", "r")
    with pytest.raises(UsageError):
        layout.coadd("1804p325", "image", "../r")
    with pytest.raises(UsageError):
        layout.psfex_single(IMG, "../CCD4")
    with pytest.raises(UsageError):
        layout.image_companion("plain.fits", "ood")


def test_survey_ccds_tables_are_what_legacypipe_globs(tmp_path: Path) -> None:
    """``survey-ccds*.fits.gz`` at the top only: not the kd-tree file, not the depth cut's."""
    layout = ReleaseLayout(tmp_path)
    names = [
        "survey-ccds-90prime-g.fits.gz",
        "survey-ccds-mosaic-z.fits.gz",
        "survey-ccds-dr10.kd.fits",
        "ccds-annotated-mosaic-z.fits.gz",
        "depthcut/survey-ccds-depthcut-dr10.fits.gz",
    ]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert layout.survey_ccds_tables() == [
        tmp_path / "survey-ccds-90prime-g.fits.gz",
        tmp_path / "survey-ccds-mosaic-z.fits.gz",
    ]
