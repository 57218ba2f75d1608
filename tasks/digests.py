"""Content digests of the files units read and write, hashed only when a file may have changed.

A unit's fingerprint is built from what its inputs *hold*, not from when they were written: a
file copied back over itself, or touched, changes nothing.  Hashing every input on every rerun
would cost as much as reading the survey, so, as build systems do (git's index, redo, Bazel's
digest cache), each recorded digest keeps the file's *stamp* (size, mtime, ctime, inode): a
file whose stamp is unchanged is taken to hold the recorded bytes, and only a file whose stamp
differs is hashed again.  The ctime and inode catch what ``touch -d`` and a rename-over hide
from the mtime.  A stamp taken within :data:`RACY_S` of a change is not trusted (the file may
still change within the same clock tick): it is recorded without a stamp, so it is hashed next
time (git's "racily clean" entries).

Two ways to read an input: its whole content (``sha256:``) or only its primary FITS header
(``header:``), for discovery, which reads nothing else of an image.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lsdr.survey.core.fileio import sha256_file

Stamp = tuple[int, int, int, int]
"""(size, mtime_ns, ctime_ns, inode) of a file: any write or rename-over changes one of them."""

MISSING = "missing"
"""The digest of a file that is not there (a unit may depend on a file's absence)."""

RACY_S = 2.0
"""A stamp whose ctime is this close to the moment of hashing is not trusted (clock ticks are
coarse and NFS servers' clocks drift): the digest is kept, the stamp dropped."""

FITS_BLOCK = 2880
CONTENT, HEADER = "content", "header"
"""What of a file a unit reads: all of it, or its primary FITS header only."""


def stat_stamp(path: str | Path) -> Stamp | None:
    """The file's stamp, or None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def content_digest(path: str | Path) -> str:
    """``sha256:<hex>`` of the whole file (the release's checksums' own hash)."""
    return f"sha256:{sha256_file(Path(path))}"


def header_digest(path: str | Path) -> str:
    """``header:<hex>``: sha256 of the primary FITS header's blocks, through its END card.

    A file that is not FITS, or ends before END, is hashed whole (so any change is seen).
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(FITS_BLOCK)
            h.update(block)
            if len(block) < FITS_BLOCK:
                return content_digest(path)
            if any(block[i : i + 8] == b"END     " for i in range(0, FITS_BLOCK, 80)):
                return f"header:{h.hexdigest()}"


@dataclass(frozen=True)
class FileDigest:
    """What a unit read (or wrote) of one file: its digest and the stamp it had then."""

    path: str
    digest: str
    stamp: Stamp | None = None
    """None: not trusted (taken while the file could still change), or the file is missing."""

    def as_list(self, root: str | Path | None = None) -> list[object]:
        """The sidecar's form: ``[path, digest, size, mtime_ns, ctime_ns, inode]``.

        The path relative to ``root`` when under it (see :func:`relative`).
        """
        return [relative(self.path, root), self.digest, *(self.stamp or ())]

    @classmethod
    def from_list(cls, item: Sequence[object], root: str | Path | None = None) -> FileDigest | None:
        """Read the sidecar's form back; None for anything else (an old sidecar's stamp)."""
        if len(item) not in (2, 6) or not all(isinstance(x, str) for x in item[:2]):
            return None
        path = absolute(str(item[0]), root)
        if len(item) == 2:
            return cls(path, str(item[1]))
        size, mtime, ctime, ino = (int(x) for x in item[2:])  # type: ignore[call-overload]
        return cls(path, str(item[1]), (size, mtime, ctime, ino))


def relative(path: str | Path, root: str | Path | None) -> str:
    """``path`` relative to the release root when under it, so a moved release keeps its cache.

    Sidecars and fingerprints name files this way: a release copied from scratch to another
    file system is found done where its bytes are the same (stamps differ, so it is hashed).
    """
    text = str(path)
    if root is None:
        return text
    base = str(root).rstrip("/") + "/"
    return text[len(base) :] if text.startswith(base) else text


def absolute(name: str, root: str | Path | None) -> str:
    """The path a sidecar's name stands for (:func:`relative` undone)."""
    if root is None or os.path.isabs(name):
        return name
    return os.path.join(str(root), name)


_MEMO: dict[tuple[str, str], FileDigest] = {}
"""This process's digests by (path, kind), valid while the file's stamp is unchanged."""
MEMO_MAX = 1_000_000


def digest_file(
    path: str | Path,
    kind: str = CONTENT,
    known: FileDigest | None = None,
    *,
    trusted: bool = False,
) -> tuple[FileDigest, bool]:
    """The file's digest and whether it had to be hashed (False: its stamp vouched for it).

    ``known``: the digest recorded last time (a sidecar's); reused when the stamp is the same.
    ``trusted``: the caller just wrote the file atomically and nothing else writes it (a unit's
    outputs), so its fresh stamp is kept although the change is recent.
    """
    path = str(path)
    stamp = stat_stamp(path)
    if stamp is None:
        return FileDigest(path, MISSING), False
    for candidate in (known, _MEMO.get((path, kind))):
        if candidate is not None and candidate.stamp == stamp and _kind(candidate) == kind:
            return candidate, False
    digest = header_digest(path) if kind == HEADER else content_digest(path)
    after = stat_stamp(path)
    recent = time.time_ns() - stamp[2] < RACY_S * 1e9
    keep = after == stamp and (trusted or not recent)
    record = FileDigest(path, digest, stamp if keep else None)
    if keep:
        if len(_MEMO) >= MEMO_MAX:
            _MEMO.clear()
        _MEMO[(path, kind)] = record
    return record, True


def _kind(record: FileDigest) -> str:
    return HEADER if record.digest.startswith("header:") else CONTENT


def digest_files(
    paths: Iterable[str | Path],
    kind: str = CONTENT,
    known: Mapping[str, FileDigest] | None = None,
    *,
    trusted: bool = False,
) -> tuple[list[FileDigest], int]:
    """Digests of ``paths`` in order, and how many had to be hashed."""
    out, hashed = [], 0
    for path in paths:
        record, did = digest_file(path, kind, (known or {}).get(str(path)), trusted=trusted)
        out.append(record)
        hashed += did
    return out, hashed


def by_path(
    items: Iterable[Sequence[object]], root: str | Path | None = None
) -> dict[str, FileDigest]:
    """A sidecar's list of digests, by (absolute) path; unreadable entries left out."""
    out = {}
    for item in items:
        record = FileDigest.from_list(item, root) if isinstance(item, list | tuple) else None
        if record is not None:
            out[record.path] = record
    return out
