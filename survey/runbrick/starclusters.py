"""Where the lite engine finds legacypipe's star-cluster list, ``NGC-star-clusters.fits``.

legacypipe ships the list as package data (``legacypipe/data/``) and masks each cluster's
ellipse as CLUSTER.  The lite engine runs without the legacypipe build, so it looks, in order:

1. an explicit path: ``RunbrickOptions.star_clusters_cat``, else the environment variable
   ``LSDR_STAR_CLUSTERS_CAT`` (a path that does not exist is an error, not a fallback);
2. the legacypipe build's package data (``<prefix>/legacypipe/py/legacypipe/data/``, the
   prefix of ``lsdr.infra.legacypipe_build``);
3. the vendored source tarball ``../shared/vendor/legacypipe-*.tar.gz``: the one member is
   extracted once into ``$XDG_CACHE_HOME/lsdr/`` (default ``~/.cache/lsdr/``).

None found: ``find_star_clusters`` returns None and the ``refs`` stage says so in the log.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.errors import InputFileError, UsageError
from lsdr.survey.core.fileio import atomic_path

CLUSTERS_FILE = "NGC-star-clusters.fits"
CLUSTERS_ENV = "LSDR_STAR_CLUSTERS_CAT"
MEMBER_SUFFIX = f"legacypipe/py/legacypipe/data/{CLUSTERS_FILE}"

CLUSTER_DTYPE = np.dtype(
    [("ra", ">f8"), ("dec", ">f8"), ("radius", ">f8"), ("ba", ">f8"), ("pa", ">f8")]
)
"""The columns the masks use: centre (deg), radius (deg, the major semi-axis), b/a, PA (deg)."""


def cache_dir() -> Path:
    """lsdr's cache directory for files extracted from the vendored tarballs."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lsdr"


def _from_build() -> Path | None:
    from lsdr.infra.legacypipe_build import default_prefix

    path = default_prefix() / "legacypipe" / "py" / "legacypipe" / "data" / CLUSTERS_FILE
    return path if path.is_file() else None


def _from_vendor() -> Path | None:
    from lsdr.infra.legacypipe_build import VENDOR

    for tarball in sorted(VENDOR.glob("legacypipe-*.tar.gz"), reverse=True):
        out = cache_dir() / tarball.name.removesuffix(".tar.gz") / CLUSTERS_FILE
        if out.is_file():
            return out
        try:
            with tarfile.open(tarball) as tar:
                member = next(
                    (m for m in tar.getmembers() if m.isfile() and m.name.endswith(MEMBER_SUFFIX)),
                    None,
                )
                source = tar.extractfile(member) if member is not None else None
                if source is None:
                    continue
                data = source.read()
        except (OSError, tarfile.TarError):
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            tmp.write_bytes(data)
        return out
    return None


def find_star_clusters(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The star-cluster list by the order of the module docstring, or None."""
    chosen = explicit if explicit is not None else os.environ.get(CLUSTERS_ENV) or None
    if chosen is not None:
        path = Path(chosen)
        if not path.is_file():
            raise UsageError(f"star-cluster catalogue {path} does not exist")
        return path
    return _from_build() or _from_vendor()


def read_star_clusters(path: Path) -> npt.NDArray[np.void]:
    """The clusters' centres, radii and ellipse shapes (``CLUSTER_DTYPE``)."""
    import fitsio

    try:
        table = np.asarray(fitsio.read(str(path), ext=1, lower=True))
    except (OSError, ValueError) as err:
        raise InputFileError(f"{path}: cannot read the star-cluster list ({err})") from err
    out = np.zeros(len(table), CLUSTER_DTYPE)
    for name in CLUSTER_DTYPE.names or ():
        if name not in (table.dtype.names or ()):
            raise InputFileError(f"{path}: star-cluster list lacks column {name!r}")
        out[name] = table[name]
    return out
