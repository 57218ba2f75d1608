"""legacypipe's package data that lite reads as legacypipe does (amplifier corrections, …).

Some of what legacypipe measures with comes with its code rather than with the survey: the
per-amplifier zeropoint offsets of Mosaic and 90Prime (``data/ampcorrections.fits``), the list
of star clusters (``data/NGC-star-clusters.fits``).  lite reads the same files, found in this
order: a directory named by ``LSDR_LEGACYPIPE_DATA``; the legacypipe build the engine runs
(``lsdr.infra.legacypipe_build``: ``LSDR_LEGACYPIPE_PREFIX`` or
``/var/cache/lsdr/legacypipe-<hash>``, ``make legacypipe``);
the vendored legacypipe tarball (``../shared/vendor/legacypipe-*.tar.gz``), whose member is
extracted once into ``$XDG_CACHE_HOME/lsdr/legacypipe-data/<tarball>/`` (``~/.cache`` without
it).  None of them: an :class:`InputFileError` naming where it looked and the fix.
"""

from __future__ import annotations

import os
import tarfile
from functools import cache
from pathlib import Path

from lsdr.infra.legacypipe_build import VENDOR, default_prefix
from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.fileio import atomic_path

MEMBER_DIR = "legacypipe/py/legacypipe/data"
"""Where the package data sits in the vendored tarball and in the build's prefix."""


def _build_dirs() -> list[Path]:
    """The data directory of the legacypipe build the engine runs (the build script's prefix)."""
    return [default_prefix() / MEMBER_DIR]


def _cache_root() -> Path:
    """``$XDG_CACHE_HOME/lsdr/legacypipe-data`` (``~/.cache`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lsdr" / "legacypipe-data"


def _from_tarball(tarball: Path, name: str) -> Path | None:
    """The member ``data/<name>`` of a vendored tarball, extracted once into the cache."""
    target = _cache_root() / tarball.name.removesuffix(".tar.gz") / name
    if target.exists():
        return target
    member = f"{MEMBER_DIR}/{name}"
    with tarfile.open(tarball) as tar:
        try:
            info = tar.getmember(member)
        except KeyError:
            return None
        source = tar.extractfile(info)
        if source is None:
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            tmp.write_bytes(source.read())
    return target


@cache
def legacypipe_data_file(name: str) -> Path:
    """The path of legacypipe's package-data file ``name`` (e.g. ``ampcorrections.fits``)."""
    looked: list[str] = []
    configured = os.environ.get("LSDR_LEGACYPIPE_DATA")
    if configured:
        path = Path(configured) / name
        if path.exists():
            return path
        looked.append(str(path))
    for data_dir in _build_dirs():
        if (data_dir / name).exists():
            return data_dir / name
        looked.append(str(data_dir / name))
    for tarball in sorted(VENDOR.glob("legacypipe-*.tar.gz")):
        found = _from_tarball(tarball, name)
        if found is not None:
            return found
        looked.append(f"{tarball}:{MEMBER_DIR}/{name}")
    raise InputFileError(
        f"legacypipe's package data {name} not found (looked in: {', '.join(looked) or 'nothing'}"
        f"; no {VENDOR}/legacypipe-*.tar.gz): set LSDR_LEGACYPIPE_DATA to a directory holding "
        "it, or build legacypipe (make legacypipe)"
    )
