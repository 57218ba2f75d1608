"""Atomic output: every product is written under a temporary name, then renamed into place."""

from __future__ import annotations

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
    temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"tmp-{os.getpid()}-{path.name}")
    tmp.unlink(missing_ok=True)
    for fd in _TEMPORARIES:
        os.write(fd, f"{tmp}\n".encode())
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
