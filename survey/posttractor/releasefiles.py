"""Which files of a release directory are published: one rule for checksums and for rsync.

A release directory doubles as the processing area, so it holds things that must not leave it:

- ``images/`` — the CP images (links to the camera archives): inputs, not products;
- ``state/`` (unit ledger, Prefect home and database, provenance sidecars), ``checkpoints/``,
  ``pickles/`` — orchestration and runbrick stage state;
- ``lsdr.yaml``, ``external-catalogues.yaml`` — orchestration configuration (may name
  databases and site paths);
- ``truth/`` — the simulator's answer key; ``external-input/`` — external catalogues as read
  (SDSS's files, or their stand-ins); ``gaia/``, ``tycho2.kd.fits`` — reference catalogues:
  other surveys' data, published by them;
- ``calib/psfex-single``, ``calib/sky-single``, ``calib/se`` — per-CCD calibrations, merged per
  exposure into ``calib/psfex`` and ``calib/sky``;
- ``logs/<bri>/`` — the raw per-brick logs, published as ``logs/*.tar.gz`` instead;
- ``tractor/<bri>/brick-<brick>.sha256sum`` — runbrick's per-brick checksums, superseded by
  the per-directory checksum files (legacypipe moved them to an attic);
- ``*-orig.fits``, ``*-orig.fits.fz`` — the bright-neighbour step's backups of runbrick's
  tractor catalogue and maskbits (kept beside them for reruns);
- ``tmp-*`` — atomic writes in progress; and every symbolic link (``depthcut/``'s links to the
  release's own directories; links into a machine's file systems mean nothing elsewhere).
"""

from __future__ import annotations

from pathlib import PurePosixPath

UNPUBLISHED_TOP = (
    "images",
    "state",
    "checkpoints",
    "pickles",
    "truth",
    "external-input",
    "gaia",
    "tycho2.kd.fits",
    "lsdr.yaml",
    "external-catalogues.yaml",
)
"""Top-level names of a release that are never published."""
UNPUBLISHED_SUBDIRS = ("calib/psfex-single", "calib/sky-single", "calib/se")
"""Per-CCD calibrations: intermediates, merged per exposure into ``calib/psfex`` and
``calib/sky`` (what releases publish)."""
BRICK_DIRS = ("tractor", "tractor-i", "coadd", "metrics")
"""Per-brick output directories: their checksums come from the bricks' checksum files."""
LOGS_DIR = "logs"
"""Raw logs live in ``logs/<bri>/``; only the tarballs at ``logs/`` top are published."""
CHECKSUM_SUFFIX = ".sha256sum"
"""Checksum files: never listed in a checksum file themselves."""
BRICK_CHECKSUM_GLOB = "brick-*.sha256sum"
"""runbrick's per-brick checksum files (``tractor/<bri>/``), not published."""
BACKUP_GLOBS = ("*-orig.fits", "*-orig.fits.fz")
"""The bright-neighbour step's backups of runbrick's originals (``tractor-<brick>-orig.fits``,
``legacysurvey-<brick>-maskbits-orig.fits.fz``): kept for reruns, not published (legacypipe kept
them in an attic outside the release)."""
TMP_PREFIX = "tmp-"
"""Prefix of atomic writes in progress (``lsdr.survey.core.fileio.atomic_path``)."""


def is_published(rel: PurePosixPath, *, is_dir: bool, is_link: bool) -> bool:
    """Whether a path of the release (relative to its root) is published."""
    parts = rel.parts
    if not parts or is_link:
        return False
    if parts[0] in UNPUBLISHED_TOP:
        return False
    if any(rel == PurePosixPath(d) or PurePosixPath(d) in rel.parents for d in UNPUBLISHED_SUBDIRS):
        return False
    if parts[-1].startswith(TMP_PREFIX):
        return False
    if not is_dir and any(rel.match(g) for g in BACKUP_GLOBS):
        return False
    if parts[0] == LOGS_DIR and (len(parts) > 2 or (len(parts) == 2 and is_dir)):
        return False
    return not (not is_dir and parts[0] == "tractor" and rel.match(BRICK_CHECKSUM_GLOB))


def rsync_excludes() -> list[str]:
    """The same rule as ``--exclude`` arguments for rsync (anchored at the release root)."""
    args = [f"--exclude=/{name}" for name in (*UNPUBLISHED_TOP, *UNPUBLISHED_SUBDIRS)]
    args += [
        f"--exclude=/{LOGS_DIR}/*/",
        f"--exclude=/tractor/*/{BRICK_CHECKSUM_GLOB}",
        f"--exclude={TMP_PREFIX}*",
        *(f"--exclude={g}" for g in BACKUP_GLOBS),
    ]
    return args
