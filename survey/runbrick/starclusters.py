"""Where the lite engine finds legacypipe's star-cluster list, ``NGC-star-clusters.fits``.

legacypipe ships the list as package data (``legacypipe/data/``) and masks each cluster's
ellipse as CLUSTER.  The lite engine runs without the legacypipe build, so it looks, in order:

1. an explicit path: ``RunbrickOptions.star_clusters_cat``, else the environment variable
   ``LSDR_STAR_CLUSTERS_CAT`` (a path that does not exist is an error, not a fallback);
2. legacypipe's package data where :mod:`lsdr.survey.core.legacypipe_data` finds it (the
   directory ``LSDR_LEGACYPIPE_DATA``, the legacypipe build, the vendored source tarball
   ``../shared/vendor/legacypipe-*.tar.gz``, whose member is extracted once into
   ``$XDG_CACHE_HOME/lsdr/legacypipe-data/``).

None found: ``find_star_clusters`` returns None and the ``refs`` stage says so in the log.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.errors import InputFileError, UsageError
from lsdr.survey.core.legacypipe_data import legacypipe_data_file

CLUSTERS_FILE = "NGC-star-clusters.fits"
CLUSTERS_ENV = "LSDR_STAR_CLUSTERS_CAT"

CLUSTER_DTYPE = np.dtype(
    [("ra", ">f8"), ("dec", ">f8"), ("radius", ">f8"), ("ba", ">f8"), ("pa", ">f8")]
)
"""The columns the masks use: centre (deg), radius (deg, the major semi-axis), b/a, PA (deg)."""


def find_star_clusters(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The star-cluster list by the order of the module docstring, or None."""
    chosen = explicit if explicit is not None else os.environ.get(CLUSTERS_ENV) or None
    if chosen is not None:
        path = Path(chosen)
        if not path.is_file():
            raise UsageError(f"star-cluster catalogue {path} does not exist")
        return path
    try:
        return legacypipe_data_file(CLUSTERS_FILE)
    except InputFileError:
        return None


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
