"""Log tarballs: each ``logs/<bri>/`` directory as ``logs/legacysurvey_<dr>_logs_<bri>.tar.gz``.

A release publishes its runbrick logs tarred and gzipped per output subdirectory (the
cookbook's ``tar-logfiles.py``: members ``<bri>/…``).  The lite runbrick appends every run of a
brick to ``logs/<bri>/<brick>.log`` (the shared directory, like legacypipe's
``runbrick-perlmutter.sh``); a brick that ran on nodes writing their own files —
``<brick>.log.<node>``, ``<brick>-<jobid>.log``, or ``<brick>/<anything>`` — has several.  Those
are concatenated into the one member ``<bri>/<brick>.log``, ``<brick>.log`` first then the
others by modification time, each introduced by a line naming its source file.  Files that do
not belong to a brick go in as they are.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.fileio import atomic_path
from lsdr.survey.core.layout import ReleaseLayout

_BRICK_PREFIX = re.compile(r"^(\d{4}[pm]\d{3})(?:$|[._-])")
"""A file (or directory) name that starts with a brick name, then ends or goes on with . _ -."""
SOURCE_LINE = "===== lsdr: log file {name} =====\n"
"""The line that introduces each source file in a concatenated brick log."""


@dataclass(frozen=True)
class LogGroup:
    """The log files of one tarball member: a brick's logs, or one other file."""

    member: str
    sources: tuple[Path, ...]


def log_groups(layout: ReleaseLayout, bri: str) -> list[LogGroup]:
    """The members of ``bri``'s tarball and the log files each is made of, sorted by member."""
    layout.log_tarball(bri)  # validates bri
    top = layout.brick_log_dir(bri)
    if not top.is_dir():
        return []
    by_brick: dict[str, list[Path]] = defaultdict(list)
    others: list[LogGroup] = []
    for path in sorted(top.rglob("*")):
        if not path.is_file() or path.is_symlink() or path.name.startswith("tmp-"):
            continue
        rel = path.relative_to(top)
        match = _BRICK_PREFIX.match(rel.parts[0])
        if match and match.group(1).startswith(bri):
            by_brick[match.group(1)].append(path)
        else:
            others.append(LogGroup(f"{bri}/{rel.as_posix()}", (path,)))
    groups = [
        LogGroup(f"{bri}/{brick}.log", tuple(_ordered(top / f"{brick}.log", paths)))
        for brick, paths in by_brick.items()
    ]
    return sorted([*groups, *others], key=lambda g: g.member)


def _ordered(main: Path, paths: list[Path]) -> list[Path]:
    """``<brick>.log`` first, then the other logs of the brick by modification time."""
    rest = sorted((p for p in paths if p != main), key=lambda p: (p.stat().st_mtime_ns, p.name))
    return ([main] if main in paths else []) + rest


def member_bytes(group: LogGroup, top: Path) -> bytes:
    """A member's content: the one file as is, or the brick's logs concatenated."""
    try:
        if len(group.sources) == 1:
            return group.sources[0].read_bytes()
        parts = []
        for source in group.sources:
            parts.append(SOURCE_LINE.format(name=source.relative_to(top).as_posix()).encode())
            data = source.read_bytes()
            parts.append(data if data.endswith(b"\n") or not data else data + b"\n")
        return b"".join(parts)
    except OSError as err:
        raise InputFileError(f"{top}: cannot read a log file ({err})") from err


def tar_logs(layout: ReleaseLayout, bri: str) -> Path:
    """Write ``logs/legacysurvey_<dr>_logs_<bri>.tar.gz`` from ``logs/<bri>/`` (atomically).

    Members are ``<bri>/<brick>.log`` (a brick's logs concatenated) and any other file as
    ``<bri>/<relative path>``, with the newest source's modification time.  An empty or missing
    directory gives an empty tarball.
    """
    target = layout.log_tarball(bri)
    top = layout.logs_dir
    groups = log_groups(layout, bri)
    with atomic_path(target) as tmp, tarfile.open(tmp, "w:gz") as tar:
        for group in groups:
            data = member_bytes(group, top)
            info = tarfile.TarInfo(group.member)
            info.size = len(data)
            info.mtime = int(max(p.stat().st_mtime for p in group.sources))
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return target


def log_prefixes(layout: ReleaseLayout) -> list[str]:
    """The ``<bri>`` directories under ``logs/`` (what :func:`tar_logs` can be called on)."""
    top = layout.logs_dir
    if not top.is_dir():
        return []
    return sorted(p.name for p in top.iterdir() if p.is_dir() and len(p.name) == 3)
