"""Packaging: brick checksum verification, release checksum files, log tarballs, publishing."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.posttractor.checksums import (
    checksum_other,
    listed_files,
    read_checksum_file,
    repackage_checksums,
    verify_brick_checksums,
)
from lsdr.survey.posttractor.logtars import SOURCE_LINE, tar_logs
from lsdr.survey.posttractor.publish import publish, published_tree
from lsdr.survey.runbrick.writecat import write_brick_checksums

BRICKS = ("1801p320", "1801p322")


def flip_byte(path: Path, offset: int = 100) -> None:
    """Invert one byte of a file in place."""
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0xFF
    path.write_bytes(bytes(data))


def sha256sum_check(checksum_file: Path) -> subprocess.CompletedProcess[str]:
    """coreutils ``sha256sum -c`` run in the checksum file's directory."""
    return subprocess.run(
        ["sha256sum", "--strict", "-c", checksum_file.name],
        cwd=checksum_file.parent,
        capture_output=True,
        text=True,
        check=False,
    )


def make_release(root: Path) -> ReleaseLayout:
    """Two bricks of products with runbrick's checksum files, plus everything else a release has.

    Also unpublished things: images/ as a symlink, state/, checkpoints/, raw logs (one brick
    with a second node's log), a temporary file, a depthcut link and bright-neighbour backups.
    """
    layout = ReleaseLayout(root)
    for i, brick in enumerate(BRICKS):
        files = [
            layout.tractor(brick),
            layout.tractor_i(brick),
            layout.coadd(brick, "image", "g"),
            layout.coadd(brick, "invvar", "g"),
            layout.coadd_maskbits(brick),
            layout.metrics(brick, "blobs"),
        ]
        for j, path in enumerate(files):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(bytes([i, j]) * 700)
        write_brick_checksums(layout, brick)
        log = layout.brick_log(brick)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"{brick}: run on node A\n")
    backup = layout.coadd_dir(BRICKS[0]) / f"legacysurvey-{BRICKS[0]}-maskbits-orig.fits.fz"
    backup.write_text("bright-neighbour backup")
    layout.tractor(BRICKS[0]).with_name(f"tractor-{BRICKS[0]}-orig.fits").write_text("backup")
    (layout.root / "logs" / "180" / f"{BRICKS[0]}.log.nodeB").write_text("run on node B\n")
    (layout.root / "logs" / "180" / BRICKS[1]).mkdir()
    (layout.root / "logs" / "180" / BRICKS[1] / "log.1234").write_text("job 1234\n")
    (layout.root / "logs" / "180" / "notes.txt").write_text("not a brick log\n")
    for rel, text in {
        "survey-ccds-90prime-g.fits.gz": "ccds",
        "survey-bricks-dr10.fits.gz": "summary",
        "sweep/10.0/sweep-180p030-185p035.fits": "sweep",
        "external/survey-dr10-dr12Q.fits": "matched",
        "calib/psfex/90prime/CP/V2.3/CP20170217/ksb-psfex.fits": "psf",
        "calib/psfex-single/90prime/x/ksb-CCD1-psfex.fits": "single",
        "plots/depth.png": "png",
        "state/ledger.sqlite": "db",
        "checkpoints/180/checkpoint-1801p320.pickle": "ck",
        "truth/truth.fits": "truth",
        "lsdr.yaml": "database_url: postgresql://secret\n",
        "external/tmp-123-survey-dr10-x.fits": "partial",
    }.items():
        path = layout.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    archive = root.parent / "archive" / "images"  # the camera archive, outside the release
    archive.mkdir(parents=True)
    (archive / "ksb.fits").write_text("cp image")
    os.symlink(archive, layout.images_dir)
    (layout.root / "depthcut").mkdir()
    os.symlink(Path("..") / "images", layout.root / "depthcut" / "images")
    (layout.root / "depthcut" / "survey-ccds-depthcut-dr10.fits.gz").write_text("cut")
    return layout


@pytest.fixture
def release(tmp_path: Path) -> ReleaseLayout:
    """A fresh small release."""
    return make_release(tmp_path / "rel")


def test_verify_names_a_flipped_missing_or_extra_file(release: ReleaseLayout) -> None:
    """A flipped byte, a deleted file and an unlisted coadd file are each caught and named."""
    brick = BRICKS[0]
    report = verify_brick_checksums(release, brick)
    assert report.ok and report.n_files == 6
    flip_byte(release.coadd(brick, "image", "g"))
    release.metrics(brick, "blobs").unlink()
    (release.coadd_dir(brick) / "legacysurvey-1801p320-extra.fits").write_text("x")
    report = verify_brick_checksums(release, brick)
    assert not report.ok
    assert report.mismatched == ("coadd/180/1801p320/legacysurvey-1801p320-image-g.fits.fz",)
    assert report.missing == ("metrics/180/blobs-1801p320.fits.gz",)
    assert report.unlisted == ("coadd/180/1801p320/legacysurvey-1801p320-extra.fits",)
    assert "image-g" in report.describe() and "blobs" in report.describe()
    assert verify_brick_checksums(release, BRICKS[1]).ok


def test_bad_checksum_files_are_errors_naming_them(release: ReleaseLayout) -> None:
    """A missing, malformed or escaping checksum file is an input error naming the file."""
    path = release.brick_checksums(BRICKS[0])
    path.write_text("abc *tractor/180/tractor-1801p320.fits\n")
    with pytest.raises(InputFileError, match=r"brick-1801p320\.sha256sum, line 1"):
        verify_brick_checksums(release, BRICKS[0])
    path.write_text("0" * 64 + " *../../etc/passwd\n")
    with pytest.raises(InputFileError, match="leaves the release"):
        verify_brick_checksums(release, BRICKS[0])
    path.unlink()
    with pytest.raises(InputFileError, match="no checksum file"):
        verify_brick_checksums(release, BRICKS[0])


def test_repackaged_checksums_follow_the_release_convention(release: ReleaseLayout) -> None:
    """One file per directory, named legacysurvey_<dr>_<dir>, that sha256sum -c accepts."""
    written = repackage_checksums(release, BRICKS)
    rel = sorted(p.relative_to(release.root).as_posix() for p in written)
    assert rel == [
        "coadd/180/1801p320/legacysurvey_dr10_coadd_180_1801p320.sha256sum",
        "coadd/180/1801p322/legacysurvey_dr10_coadd_180_1801p322.sha256sum",
        "metrics/180/legacysurvey_dr10_metrics_180.sha256sum",
        "tractor-i/180/legacysurvey_dr10_tractor-i_180.sha256sum",
        "tractor/180/legacysurvey_dr10_tractor_180.sha256sum",
    ]
    for path in written:
        check = sha256sum_check(path)
        assert check.returncode == 0, check.stdout + check.stderr
    tractor_sums = release.root / rel[-1]
    tractor = read_checksum_file(tractor_sums, tractor_sums.parent)
    assert sorted(tractor) == ["tractor-1801p320.fits", "tractor-1801p322.fits"]
    flip_byte(release.tractor(BRICKS[1]))
    assert sha256sum_check(tractor_sums).returncode != 0


def test_other_checksums_cover_every_published_file_outside_the_bricks(
    release: ReleaseLayout,
) -> None:
    """Top level, sweeps, external, calib, plots, depthcut, log tarballs: one file per dir."""
    tar_logs(release, "180")
    written = checksum_other(release)
    rel = sorted(p.relative_to(release.root).as_posix() for p in written)
    assert rel == [
        "calib/psfex/90prime/CP/V2.3/CP20170217/"
        "legacysurvey_dr10_calib_psfex_90prime_CP_V2.3_CP20170217.sha256sum",
        "depthcut/legacysurvey_dr10_depthcut.sha256sum",
        "external/legacysurvey_dr10_external.sha256sum",
        "legacysurvey_dr10.sha256sum",
        "logs/legacysurvey_dr10_logs.sha256sum",
        "plots/legacysurvey_dr10_plots.sha256sum",
        "sweep/10.0/legacysurvey_dr10_sweep_10.0.sha256sum",
    ]
    for path in written:
        assert sha256sum_check(path).returncode == 0
    top = read_checksum_file(release.root / rel[3], release.root)
    assert sorted(top) == ["survey-bricks-dr10.fits.gz", "survey-ccds-90prime-g.fits.gz"]
    assert list(read_checksum_file(release.root / rel[2], release.root)) == [
        "survey-dr10-dr12Q.fits"
    ]
    assert list(read_checksum_file(release.root / rel[4], release.root)) == [
        "legacysurvey_dr10_logs_180.tar.gz"
    ]


def test_log_tarball_holds_every_log_with_a_bricks_logs_concatenated(
    release: ReleaseLayout,
) -> None:
    """Every file of logs/180/ is in the tarball; a brick's several logs become one member."""
    path = tar_logs(release, "180")
    assert path == release.root / "logs" / "legacysurvey_dr10_logs_180.tar.gz"
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert sorted(members) == ["180/1801p320.log", "180/1801p322.log", "180/notes.txt"]
    logs = release.root / "logs"
    sources = [p for p in sorted((logs / "180").rglob("*")) if p.is_file()]
    assert len(sources) == 5
    for source in sources:
        text = source.read_text()
        assert any(text in body for body in members.values()), source
    first = members["180/1801p320.log"]
    assert first.startswith(SOURCE_LINE.format(name="180/1801p320.log"))
    assert first.index("node A") < first.index("node B")
    assert members["180/notes.txt"] == "not a brick log\n"
    again = tar_logs(release, "180")
    with tarfile.open(again) as tar:
        assert sorted(tar.getnames()) == sorted(members)


def test_publish_copies_exactly_the_checksummed_files(
    release: ReleaseLayout, tmp_path: Path
) -> None:
    """rsync copies the listed files and their checksum files; a dry run copies nothing."""
    tar_logs(release, "180")
    sums = [*repackage_checksums(release, BRICKS), *checksum_other(release)]
    expected = {p.relative_to(release.root).as_posix() for p in listed_files(sums)}
    expected |= {p.relative_to(release.root).as_posix() for p in sums}
    dest = tmp_path / "published"
    dry = publish(release, str(dest), dry_run=True)
    assert not dest.exists()
    assert set(dry.files) == expected and dry.dry_run
    assert "--dry-run" in dry.command
    result = publish(release, str(dest), dry_run=False)
    assert published_tree(dest) == expected == set(result.files)
    for unpublished in ("images", "state", "checkpoints", "truth", "lsdr.yaml", "depthcut/images"):
        assert not (dest / unpublished).exists() and not (dest / unpublished).is_symlink()
    assert not (dest / "logs" / "180").exists()
    assert not (dest / "tractor" / "180" / "brick-1801p320.sha256sum").exists()
    assert not (dest / "calib" / "psfex-single").exists()
    assert not list(dest.rglob("*-orig.*"))
    assert sha256sum_check(dest / "legacysurvey_dr10.sha256sum").returncode == 0


# -- on a real lite-runbrick brick --------------------------------------------------------------
@pytest.mark.slow
def test_a_flipped_byte_in_a_runbrick_coadd_is_caught(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A brick run by the lite runbrick verifies; one flipped coadd byte is named."""
    from runbrick_survey import BRICK, prepared_survey, private_copy

    from lsdr.survey.runbrick.options import RunbrickOptions
    from lsdr.survey.runbrick.stages import run_brick

    layout = private_copy(prepared_survey(tmp_path_factory), tmp_path_factory.mktemp("pk") / "r")
    opts = RunbrickOptions(width=300, height=300, pixscale=3.5)
    assert run_brick(layout, BRICK, opts).status == "done"
    assert verify_brick_checksums(layout, BRICK).ok
    target = layout.coadd(BRICK, "invvar", "r")
    flip_byte(target, offset=target.stat().st_size // 2)
    report = verify_brick_checksums(layout, BRICK)
    assert report.mismatched == (target.relative_to(layout.root).as_posix(),)
    assert not report.missing and not report.unlisted
    with tarfile.open(tar_logs(layout, BRICK[:3])) as tar:
        body = tar.extractfile(f"{BRICK[:3]}/{BRICK}.log").read().decode()  # type: ignore[union-attr]
    assert body == layout.brick_log(BRICK).read_text()
