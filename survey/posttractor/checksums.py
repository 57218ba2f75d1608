"""Release checksums: verify each brick's checksum file, then write the release's own.

runbrick writes ``tractor/<bri>/brick-<brick>.sha256sum`` (``<sha256> *<path from the
release>`` per product).  A data release instead publishes one checksum file per directory,
inside it, named ``legacysurvey_<dr>_<dir with / as _>.sha256sum`` and listing the directory's
files by name (``<sha256>  <name>``, ``sha256sum -c`` format): legacypipe's
``repackchecksum.py`` for the per-brick directories and ``checksumming-non-tractor.sh`` /
``checksumming-calibs.py`` for the rest.  Here:

- :func:`verify_brick_checksums` re-hashes a brick's files against its checksum file (what
  ``post-process-qa.py`` does), also flagging files of the brick's coadd directory it does not
  list;
- :func:`repackage_checksums` turns verified brick checksum files into the per-directory files
  of ``tractor/<bri>``, ``tractor-i/<bri>``, ``metrics/<bri>`` and ``coadd/<bri>/<brick>``,
  without re-reading the products;
- :func:`checksum_other` hashes every other published directory (top level, ``calib/…``,
  ``zpt/…``, ``sweep/<version>``, ``external``, ``logs`` tarballs, ``plots``, ``depthcut``),
  one checksum file per directory; :func:`checksum_directory` does one.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.fileio import sha256_file, write_text_atomic
from lsdr.survey.core.layout import ReleaseLayout, brick_dir_prefix, checked_brick
from lsdr.survey.posttractor.releasefiles import (
    BRICK_DIRS,
    CHECKSUM_SUFFIX,
    is_published,
)


@dataclass(frozen=True)
class ChecksumReport:
    """The result of checking one brick's files against its checksum file."""

    brick: str
    checksum_file: Path
    n_files: int
    mismatched: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    unlisted: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Every listed file is present with its checksum and nothing extra sits beside them."""
        return not (self.mismatched or self.missing or self.unlisted)

    def describe(self) -> str:
        """One line naming the problem files (relative to the release root)."""
        if self.ok:
            return f"{self.brick}: {self.n_files} files match"
        parts = []
        for label, names in (
            ("checksum mismatch", self.mismatched),
            ("missing", self.missing),
            ("not in the checksum file", self.unlisted),
        ):
            if names:
                parts.append(f"{label}: {', '.join(names)}")
        return f"{self.brick}: " + "; ".join(parts)


def read_checksum_file(path: Path, root: Path) -> dict[str, str]:
    """``relative path → sha256`` of a ``sha256sum`` file; malformed lines are an error.

    Paths must stay inside ``root`` (no absolute paths, no ``..``).
    """
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise InputFileError(f"{path}: cannot read the checksum file ({err.strerror})") from err
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(None, 1)
        digest = parts[0].lower() if parts else ""
        name = parts[1].strip().removeprefix("*") if len(parts) == 2 else ""
        rel = PurePosixPath(name)
        hexdigits = set("0123456789abcdef")
        if len(digest) != 64 or not set(digest) <= hexdigits or not name:
            raise InputFileError(f"{path}, line {number}: not '<sha256> *<path>': {line!r}")
        if rel.is_absolute() or ".." in rel.parts:
            raise InputFileError(f"{path}, line {number}: {name!r} leaves the release")
        entries[rel.as_posix()] = digest
    return entries


def verify_brick_checksums(layout: ReleaseLayout, brick: str) -> ChecksumReport:
    """Re-hash every file a brick's checksum file lists; name mismatched, missing, extra files.

    Extra files are those of the brick's coadd directory (``coadd/<bri>/<brick>/``) that the
    checksum file does not list (other than checksum files and unpublished files: atomic writes
    in progress, the bright-neighbour step's ``-orig`` backups).
    A missing or malformed checksum file is an :class:`InputFileError`.
    """
    b = checked_brick(brick)
    path = layout.brick_checksums(b)
    if not path.exists():
        raise InputFileError(f"{path}: brick {b} has no checksum file")
    entries = read_checksum_file(path, layout.root)
    mismatched, missing = [], []
    for rel, digest in entries.items():
        file = layout.root / rel
        if not file.is_file():
            missing.append(rel)
        elif sha256_file(file) != digest:
            mismatched.append(rel)
    unlisted = []
    coadd = layout.coadd_dir(b)
    if coadd.is_dir():
        for file in sorted(coadd.iterdir()):
            rel = file.relative_to(layout.root).as_posix()
            published = is_published(PurePosixPath(rel), is_dir=False, is_link=file.is_symlink())
            skip = file.name.endswith(CHECKSUM_SUFFIX) or not published
            if file.is_file() and not skip and rel not in entries:
                unlisted.append(rel)
    return ChecksumReport(
        brick=b,
        checksum_file=path,
        n_files=len(entries),
        mismatched=tuple(mismatched),
        missing=tuple(missing),
        unlisted=tuple(unlisted),
    )


def _write_listing(layout: ReleaseLayout, directory: Path, digests: dict[str, str]) -> Path:
    """Write ``directory``'s checksum file: ``<sha256>  <name>`` lines sorted by name."""
    lines = [f"{digests[name]}  {name}\n" for name in sorted(digests)]
    return write_text_atomic(layout.directory_checksums(directory), "".join(lines))


def repackage_checksums(layout: ReleaseLayout, bricks: Sequence[str]) -> list[Path]:
    """Per-directory checksum files of the per-brick outputs, from the bricks' checksum files.

    One file per directory the brick files list: ``tractor/<bri>``, ``tractor-i/<bri>``,
    ``metrics/<bri>`` (all of ``bricks`` in that prefix together) and ``coadd/<bri>/<brick>``.
    The digests are taken from the brick files (verify them first: the ``package`` phase does);
    the products are not read again.  Bricks are handled one ``<bri>`` at a time, so memory is
    bounded by a prefix.  A ``<bri>`` directory's file lists only the given bricks: pass all of
    the release's (verified) bricks.
    """
    by_prefix: dict[str, list[str]] = defaultdict(list)
    for brick in sorted(set(bricks)):
        by_prefix[brick_dir_prefix(brick)].append(checked_brick(brick))
    written: list[Path] = []
    for _bri, members in sorted(by_prefix.items()):
        per_dir: dict[Path, dict[str, str]] = defaultdict(dict)
        for brick in members:
            source = layout.brick_checksums(brick)
            for rel, digest in read_checksum_file(source, layout.root).items():
                relpath = PurePosixPath(rel)
                if relpath.parts[0] not in BRICK_DIRS:
                    raise InputFileError(
                        f"{source}: {rel} is not in a per-brick directory {BRICK_DIRS}"
                    )
                if is_published(relpath, is_dir=False, is_link=False):
                    per_dir[layout.root / relpath.parent][relpath.name] = digest
        written.extend(_write_listing(layout, d, per_dir[d]) for d in sorted(per_dir))
    return written


def published_files(layout: ReleaseLayout, directory: Path) -> list[Path]:
    """The published regular files directly in ``directory`` (not its checksum file), sorted."""
    out = []
    for entry in sorted(Path(directory).absolute().iterdir()):
        if entry.is_dir() or entry.name.endswith(CHECKSUM_SUFFIX):
            continue
        rel = PurePosixPath(entry.relative_to(layout.root).as_posix())
        if is_published(rel, is_dir=False, is_link=entry.is_symlink()) and entry.is_file():
            out.append(entry)
    return out


def checksum_directory(layout: ReleaseLayout, directory: Path) -> Path | None:
    """Hash the published files directly in ``directory``; write its checksum file.

    Returns the checksum file, or ``None`` (and removes a stale one) when the directory holds
    no published file.
    """
    directory = Path(directory).absolute()
    digests = {entry.name: sha256_file(entry) for entry in published_files(layout, directory)}
    target = layout.directory_checksums(directory)
    if not digests:
        target.unlink(missing_ok=True)
        return None
    return _write_listing(layout, directory, digests)


def other_directories(layout: ReleaseLayout) -> list[Path]:
    """The published directories outside the per-brick outputs, top level first.

    Symbolic links are not followed; unpublished trees (``images/``, ``state/``, raw logs…,
    see :mod:`lsdr.survey.posttractor.releasefiles`) and the per-brick directories are not entered.
    """
    found: list[Path] = []
    for current, dirs, _files in os.walk(layout.root, followlinks=False):
        here = Path(current)
        found.append(here)
        rel = PurePosixPath(here.relative_to(layout.root).as_posix())
        keep = []
        for d in sorted(dirs):
            sub = PurePosixPath(d) if rel == PurePosixPath(".") else rel / d
            if (here / d).is_symlink() or sub.parts[0] in BRICK_DIRS:
                continue
            if is_published(sub, is_dir=True, is_link=False):
                keep.append(d)
        dirs[:] = keep
    return found


def checksum_other(layout: ReleaseLayout) -> list[Path]:
    """Checksum files for every published directory outside the per-brick outputs.

    The grouping is one file per directory, named by :meth:`ReleaseLayout.directory_checksums`:
    the top level (CCD tables, kd-tree, brick tables, summaries, depth files, brick list),
    ``logs`` (the tarballs: tar them first), ``sweep/<version>``, ``external``, ``plots``, each
    ``calib/…`` and ``zpt/…`` leaf directory, ``depthcut`` and ``depthcut/<bri>``.
    """
    written = []
    for directory in other_directories(layout):
        path = checksum_directory(layout, directory)
        if path is not None:
            written.append(path)
    return written


def listed_files(paths: Iterable[Path]) -> set[Path]:
    """Every file named in per-directory checksum files (each relative to its own directory)."""
    out: set[Path] = set()
    for path in paths:
        for name in read_checksum_file(path, path.parent):
            out.add(path.parent / name)
    return out
