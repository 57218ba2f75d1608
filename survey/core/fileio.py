"""Atomic output: every product is written under a temporary name, then renamed into place."""

from __future__ import annotations

import errno
import hashlib
import os
import re
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

_TEMPORARIES: list[int] = []
"""A file descriptor where each temporary name is listed as it is made, when one is set."""


def list_temporaries(fd: int) -> None:
    """List every temporary name this process makes on ``fd``, one a line.

    A unit's child process does (``tasks/deadline.py``): when it is killed at its timeout, the
    worker removes the temporaries it left, which no ``finally`` could.
    """
    _TEMPORARIES[:] = [fd]


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary name keeps the final suffix (``tmp-<pid>-<name>``) so writers that choose a
    format from the extension (``.fits.gz``, ``.fits.fz``) behave the same.  On error the
    temporary file is removed and ``path`` is left untouched.  A write refused for want of space
    or of permission is raised as ``OSError(errno, strerror, path)`` (ENOSPC, EDQUOT, EACCES,
    EROFS), also when the writer lost the errno (:func:`no_space_error`, :func:`open_error`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"tmp-{os.getpid()}-{path.name}")
    for fd in _TEMPORARIES:
        os.write(fd, f"{tmp}\n".encode())
    try:
        tmp.unlink(missing_ok=True)  # a read-only file system refuses even this: EROFS
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        known = no_space_error(err, tmp, path) or open_error(err, tmp, path)
        if known is None:
            raise
        raise known from err
    finally:
        _remove(tmp)


def _remove(tmp: Path) -> None:
    """Remove ``tmp`` if it is there (a file system that refuses the unlink of nothing: fine)."""
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        if os.path.lexists(tmp):
            raise


NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
"""The errnos of a write refused for want of space: the file system full, the user's quota."""

FULL_BELOW_BYTES = 1 << 20
"""A write error without an errno on a file system with less free space than this is a full
disk: CFITSIO (``fitsio``) reports a failed write as ``FITSIO status = 106: error writing to
FITS file``, its errno lost, and its buffered writes fail with up to ~115 KiB still free."""


def free_bytes(path: Path) -> int:
    """The bytes free to an unprivileged user (``df``'s *Available*) on ``path``'s file system.

    ``path`` need not exist: its nearest existing parent is measured.
    """
    where = Path(path)
    while not where.exists() and where != where.parent:
        where = where.parent
    st = os.statvfs(where)
    return st.f_bavail * st.f_frsize


def _free_or_inf(path: Path) -> float:
    """:func:`free_bytes`, or infinity when the file system cannot say (a stale NFS handle)."""
    try:
        return free_bytes(path)
    except OSError:
        return float("inf")


def no_space_error(err: OSError, tmp: Path, path: Path) -> OSError | None:
    """``err`` as ``OSError(ENOSPC|EDQUOT, strerror, path)`` when writing ``tmp`` ran out of space.

    An error with that errno keeps it; an error without an errno (``fitsio``'s) is ENOSPC when
    the file system holding ``tmp`` has less than :data:`FULL_BELOW_BYTES` free; else None.
    The path named is the product's (``tmp`` is removed).
    """
    if err.errno in NO_SPACE_ERRNOS:
        code = err.errno
    elif err.errno is None and _free_or_inf(tmp.parent) < FULL_BELOW_BYTES:
        code = errno.ENOSPC
    else:
        return None
    return OSError(code, os.strerror(code), str(path))


_TEMPORARY = re.compile(r"tmp-(\d+)-")


def remove_temporaries(root: Path, pids: Collection[int], skip: Collection[str] = ()) -> list[Path]:
    """Remove the temporary files (``tmp-<pid>-<name>``) the processes ``pids`` left under ``root``.

    For a writer stopped before :func:`atomic_path` could rename or remove its file (a worker
    killed mid-unit).  The top-level directories named in ``skip`` (the release's ``images/``,
    which nothing writes) are not walked; symbolic links are not followed.  Returns what was
    removed.
    """
    wanted = {str(pid) for pid in pids}
    removed: list[Path] = []
    if not wanted:
        return removed
    for here, dirs, files in os.walk(root):
        if Path(here) == Path(root):
            dirs[:] = [d for d in dirs if d not in skip]
        for name in files:
            found = _TEMPORARY.match(name)
            if found and found.group(1) in wanted:
                path = Path(here, name)
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write bytes to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    """Write text to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode())


REFUSED_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
"""The errnos of a write refused for want of permission: the directory's mode, a read-only mount."""


def open_error(err: OSError, tmp: Path, path: Path) -> OSError | None:
    """``err`` as ``OSError(EACCES|EPERM|EROFS, strerror, path)`` when writing ``tmp`` was refused.

    An error with that errno keeps it, naming the product rather than ``tmp``.  ``fitsio``
    reports a file it could not create as ``FITSIO status = 105``, the errno lost: opening
    ``tmp`` again here gets it.  None for other errors, or when that open succeeds (``tmp`` is
    removed after).
    """
    if err.errno in REFUSED_ERRNOS:
        return OSError(err.errno, os.strerror(err.errno), str(path))
    if err.errno is not None:
        return None
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o644))
    except OSError as again:
        if again.errno not in REFUSED_ERRNOS:
            return None
        return OSError(again.errno, os.strerror(again.errno), str(path))
    return None


def read_name_list(
    path: Path, what: str, parse: Callable[[str], str], errors: tuple[type[Exception], ...]
) -> list[str]:
    """The names in a one-name-a-line list file (blank lines and ``#`` comments skipped).

    Each name goes through ``parse``; an error of a type in ``errors`` becomes an
    ``InputFileError`` naming the file and the line.
    """
    from lsdr.survey.core.errors import InputFileError

    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        raise InputFileError(f"{path}: cannot read the {what} ({err.strerror})") from err
    out = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            out.append(parse(text))
        except errors as err:
            raise InputFileError(f"{path}, line {number}: {err}") from err
    return out


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (memory does not grow with the file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
