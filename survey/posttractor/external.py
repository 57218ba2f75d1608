"""External matches: the release's primary objects matched to external catalogues (SDSS…).

What legacypipe's ``bin/match-external-catalog.py`` writes: one file per external catalogue,
``external/survey-<dr>-<name>.fits`` (extension ``MATCHED``), row-aligned with the external
catalogue.  Row *i* holds every tractor column (upper case, as the script reads the catalogues
with ``upper=True``) of the nearest ``BRICK_PRIMARY`` object within the match radius (1.5″ by
default) of external row *i*, followed by the ``--copycols`` columns of external row *i*; rows
with no object within the radius have ``OBJID = -1`` (and zeros elsewhere in the tractor
columns).  Bricks are read one at a time, so memory is the external catalogue, the output and
one brick.

The catalogues are configuration: :data:`SDSS_CATALOGUES` are the cookbook's five (DR6), with
paths relative to an SDSS data directory laid out as NERSC's ``$SDSSDIR``;
:func:`default_catalogues` points them at a release's ``external-input/`` (where the simulator
writes stand-ins), and :func:`catalogues_from_yaml` reads a list from a file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.errors import InputFileError, UsageError
from lsdr.survey.core.fileio import atomic_path
from lsdr.survey.core.layout import ReleaseLayout

MATCH_RADIUS_ARCSEC = 1.5
"""match-external-catalog.py's default ``--tolerance`` (arcsec)."""
MATCHED_EXTNAME = "MATCHED"
"""Extension name of an external-match file."""
EXTERNAL_INPUT_DIR = "external-input"
"""Where a release keeps its external catalogues (laid out as ``$SDSSDIR``): the stand-ins."""
CATALOGUES_FILE = "external-catalogues.yaml"
"""A release's own list of external catalogues; when absent, :data:`SDSS_CATALOGUES`."""


@dataclass(frozen=True)
class ExternalCatalogue:
    """One external catalogue to match: output name, file, columns to copy, position columns.

    ``name`` becomes ``external/survey-<dr>-<name>.fits``; ``copycols`` are copied from the
    external catalogue into the matched file (``--copycols``); ``ra_column``/``dec_column`` are
    its positions in degrees (``RA``/``DEC``, or ``PLUG_RA``/``PLUG_DEC`` for specObj).  Column
    names are matched case-insensitively, as the script upper-cases them.
    """

    name: str
    path: Path
    copycols: tuple[str, ...] = ()
    ra_column: str = "RA"
    dec_column: str = "DEC"


SDSS_CATALOGUES: tuple[ExternalCatalogue, ...] = (
    ExternalCatalogue(
        "dr12Q",
        Path("dr12/boss/qso/DR12Q/DR12Q.fits"),
        ("MJD", "PLATE", "FIBERID", "RERUN_NUMBER"),
    ),
    ExternalCatalogue("dr7Q", Path("dr7/dr7qso.fit.gz"), ("SMJD", "PLATE", "FIBER", "RERUN")),
    ExternalCatalogue(
        "superset-dr12Q",
        Path("dr12/boss/qso/DR12Q/Superset_DR12Q.fits"),
        ("MJD", "PLATE", "FIBERID"),
    ),
    ExternalCatalogue(
        "specObj-dr14",
        Path("dr14/sdss/spectro/redux/specObj-dr14.fits"),
        ("MJD", "PLATE", "FIBERID", "RUN2D"),
        ra_column="PLUG_RA",
        dec_column="PLUG_DEC",
    ),
    ExternalCatalogue(
        "dr14Q_v4_4",
        Path("dr14/eboss/qso/DR14Q/DR14Q_v4_4.fits"),
        ("MJD", "PLATE", "FIBERID"),
    ),
)
"""The cookbook's five SDSS catalogues (DR6 ``match-external-catalog.py`` runs): output names,
paths relative to ``$SDSSDIR`` and copy columns.  DR9/DR10 matched six (DR16 catalogues)."""


@dataclass(frozen=True)
class ExternalMatchResult:
    """What one match wrote: the file, external rows, rows matched, bricks read."""

    name: str
    path: Path
    n_external: int
    n_matched: int
    n_bricks: int
    n_bricks_missing: int
    radius_arcsec: float


# -- configuration ------------------------------------------------------------------------------
def default_catalogues(root: Path, sdss_dir: Path | None = None) -> list[ExternalCatalogue]:
    """:data:`SDSS_CATALOGUES` with absolute paths under ``sdss_dir``.

    ``sdss_dir`` defaults to the release's ``external-input/`` (the simulator's stand-ins); a
    real release passes NERSC's ``$SDSSDIR``.
    """
    base = Path(sdss_dir) if sdss_dir is not None else Path(root) / EXTERNAL_INPUT_DIR
    return [_with_path(c, base.absolute() / c.path) for c in SDSS_CATALOGUES]


def _with_path(cat: ExternalCatalogue, path: Path) -> ExternalCatalogue:
    return ExternalCatalogue(cat.name, path, cat.copycols, cat.ra_column, cat.dec_column)


def catalogue_from_dict(doc: Mapping[str, Any], base: Path | None = None) -> ExternalCatalogue:
    """An :class:`ExternalCatalogue` from a mapping (YAML entry, flow parameter).

    Keys: ``name``, ``path`` (relative paths are relative to ``base``), optional ``copycols``
    (list), ``ra_column``, ``dec_column``.  Unknown keys are an error.
    """
    if not isinstance(doc, Mapping):
        raise UsageError(f"an external catalogue must be a mapping, not {doc!r}")
    known = {"name", "path", "copycols", "ra_column", "dec_column"}
    extra = sorted(set(doc) - known)
    if extra:
        raise UsageError(f"external catalogue {doc.get('name')!r}: unknown keys {extra}")
    for key in ("name", "path"):
        if not isinstance(doc.get(key), (str, Path)) or not str(doc.get(key)):
            raise UsageError(f"external catalogue {doc.get('name')!r}: {key!r} is required")
    name = str(doc["name"])
    ReleaseLayout(Path("/")).external_match(name)  # validates the name as a file-name word
    path = Path(doc["path"])
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    copycols = doc.get("copycols") or ()
    if isinstance(copycols, str) or not all(isinstance(c, str) for c in copycols):
        raise UsageError(f"external catalogue {name!r}: copycols must be a list of column names")
    return ExternalCatalogue(
        name,
        path,
        tuple(copycols),
        str(doc.get("ra_column", "RA")),
        str(doc.get("dec_column", "DEC")),
    )


def catalogues_from_yaml(path: Path) -> list[ExternalCatalogue]:
    """The catalogue list of a YAML file (a list of mappings, or ``{catalogues: [...]}``).

    Relative paths in it are relative to the file's directory.
    """
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise InputFileError(f"{path}: cannot read the catalogue list ({err.strerror})") from err
    except yaml.YAMLError as err:
        raise InputFileError(f"{path}: not valid YAML ({err})") from err
    if isinstance(doc, Mapping):
        doc = doc.get("catalogues")
    if not isinstance(doc, list):
        raise InputFileError(f"{path}: expected a list of external catalogues")
    try:
        cats = [catalogue_from_dict(entry, base=Path(path).parent) for entry in doc]
    except UsageError as err:
        raise InputFileError(f"{path}: {err}") from err
    names = [c.name for c in cats]
    if len(set(names)) != len(names):
        raise InputFileError(f"{path}: catalogue names repeat ({names})")
    return cats


def release_catalogues(root: Path) -> list[ExternalCatalogue]:
    """A release's catalogues: ``<root>/external-catalogues.yaml`` if present, else the five."""
    listing = Path(root) / CATALOGUES_FILE
    if listing.exists():
        return catalogues_from_yaml(listing)
    return default_catalogues(Path(root))


# -- matching -----------------------------------------------------------------------------------
def radec_to_unit(ra: npt.ArrayLike, dec: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Unit vectors (N×3) of positions in degrees."""
    r = np.radians(np.asarray(ra, np.float64))
    d = np.radians(np.asarray(dec, np.float64))
    cos_d = np.cos(d)
    return np.stack([cos_d * np.cos(r), cos_d * np.sin(r), np.sin(d)], axis=-1)


def chord_of_arcsec(arcsec: float) -> float:
    """Straight-line distance between unit vectors ``arcsec`` apart on the sphere."""
    return 2.0 * math.sin(math.radians(arcsec / 3600.0) / 2.0)


def _column_names(path: Path) -> dict[str, str]:
    """Upper-case name → name in the file, for the first table extension."""
    import fitsio

    try:
        with fitsio.FITS(str(path)) as f:
            names = f[1].get_colnames()
    except (OSError, IndexError) as err:
        raise InputFileError(f"{path}: cannot read the table in HDU 1 ({err})") from err
    return {n.upper(): n for n in names}


def read_external(
    catalogue: ExternalCatalogue,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.void]]:
    """The external catalogue's unit vectors and its copy columns (upper-case names).

    Only the position and copy columns are read.  A missing column or a non-finite position is
    an error naming the file.
    """
    import fitsio

    path = Path(catalogue.path)
    if not path.exists():
        raise InputFileError(f"{path}: external catalogue {catalogue.name!r} not found")
    names = _column_names(path)
    wanted = [catalogue.ra_column, catalogue.dec_column, *catalogue.copycols]
    missing = [c for c in wanted if c.upper() not in names]
    if missing:
        raise InputFileError(f"{path}: no column(s) {missing} in the external catalogue")
    read = list(dict.fromkeys(names[c.upper()] for c in wanted))
    try:
        table = fitsio.read(str(path), ext=1, columns=read, upper=True)
    except OSError as err:
        raise InputFileError(f"{path}: cannot read the external catalogue ({err})") from err
    ra = np.asarray(table[catalogue.ra_column.upper()], np.float64)
    dec = np.asarray(table[catalogue.dec_column.upper()], np.float64)
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))):
        raise InputFileError(f"{path}: non-finite positions in {catalogue.ra_column}/Dec")
    copy_dtype = np.dtype([(c.upper(), table.dtype[c.upper()]) for c in catalogue.copycols])
    copied = np.zeros(len(table), copy_dtype)
    for c in copy_dtype.names or ():
        copied[c] = table[c]
    return radec_to_unit(ra, dec), copied


def _read_tractor(path: Path) -> tuple[npt.NDArray[np.void], list[str]]:
    """A tractor catalogue with upper-case columns, and its column units (``""`` if none)."""
    import fitsio

    try:
        with fitsio.FITS(str(path)) as f:
            hdu = f[1]
            table = hdu.read(upper=True)
            header = hdu.read_header()
    except (OSError, IndexError) as err:
        raise InputFileError(f"{path}: cannot read the tractor catalogue ({err})") from err
    names = table.dtype.names or ()
    for need in ("RA", "DEC", "OBJID", "BRICK_PRIMARY"):
        if need not in names:
            raise InputFileError(f"{path}: tractor catalogue has no {need} column")
    units = [str(header.get(f"TUNIT{i + 1}", "")).strip() for i in range(len(names))]
    return table, units


def _nearest_pairs(
    objects: npt.NDArray[np.float64], tree: Any, chord: float
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """For each external row with a brick object within ``chord``: (external, object, distance).

    The nearest object wins; equal distances go to the lower object index (file order).
    """
    from scipy.spatial import cKDTree

    if len(objects) == 0:
        empty = np.zeros(0, np.intp)
        return empty, empty, np.zeros(0)
    pairs = cKDTree(objects).sparse_distance_matrix(tree, chord, output_type="ndarray")
    if len(pairs) == 0:
        empty = np.zeros(0, np.intp)
        return empty, empty, np.zeros(0)
    obj = pairs["i"].astype(np.intp)
    ext = pairs["j"].astype(np.intp)
    dist = pairs["v"].astype(np.float64)
    order = np.lexsort((obj, dist, ext))
    ext, obj, dist = ext[order], obj[order], dist[order]
    first = np.ones(len(ext), bool)
    first[1:] = ext[1:] != ext[:-1]
    return ext[first], obj[first], dist[first]


def check_match_radius(radius_arcsec: float) -> float:
    """A match radius (arcsec) that can match anything: positive and finite."""
    if not (math.isfinite(radius_arcsec) and radius_arcsec > 0):
        raise UsageError(f"match radius must be positive, not {radius_arcsec}")
    return radius_arcsec


def match_external(
    layout: ReleaseLayout,
    catalogue: ExternalCatalogue,
    bricks: Sequence[str],
    radius_arcsec: float = MATCH_RADIUS_ARCSEC,
) -> ExternalMatchResult:
    """Match ``catalogue`` to the primary objects of ``bricks``; write its external-match file.

    Every external row gets the nearest ``BRICK_PRIMARY`` object of the release within
    ``radius_arcsec`` (nearest over all bricks; on a tie the brick read first, in sorted brick
    order, keeps it), else ``OBJID = -1``.  Bricks without a tractor catalogue (no sources)
    are skipped and counted.  The output is written atomically.
    """
    from scipy.spatial import cKDTree

    check_match_radius(radius_arcsec)
    out_path = layout.external_match(catalogue.name)
    ext_pos, copied = read_external(catalogue)
    n_ext = len(ext_pos)
    tree = cKDTree(ext_pos)
    chord = chord_of_arcsec(radius_arcsec)

    matched: npt.NDArray[np.void] | None = None
    units: list[str] = []
    best = np.full(n_ext, chord)  # a match must be strictly closer than the radius
    n_read = n_missing = 0
    for brick in sorted(set(bricks)):
        path = layout.tractor(brick)
        if not path.exists():
            n_missing += 1
            continue
        objects, brick_units = _read_tractor(path)
        n_read += 1
        if matched is None:
            matched = np.zeros(n_ext, objects.dtype)
            matched["OBJID"] = -1
            units = brick_units
            clash = sorted(set(copied.dtype.names or ()) & set(objects.dtype.names or ()))
            if clash:
                raise UsageError(
                    f"external catalogue {catalogue.name!r}: copycols {clash} are also "
                    "tractor columns"
                )
        primary = objects[np.asarray(objects["BRICK_PRIMARY"], bool)]
        pos = radec_to_unit(primary["RA"], primary["DEC"])
        ext, obj, dist = _nearest_pairs(pos, tree, chord)
        better = dist < best[ext]
        ext, obj = ext[better], obj[better]
        best[ext] = dist[better]
        _assign(matched, ext, primary[obj], path)
    if matched is None:
        raise InputFileError(
            f"{layout.tractor_dir}: no tractor catalogue among the {len(bricks)} bricks"
        )
    n_matched = int(np.count_nonzero(matched["OBJID"] != -1))
    _write_matched(out_path, matched, copied, units, catalogue, radius_arcsec, n_matched)
    return ExternalMatchResult(
        name=catalogue.name,
        path=out_path,
        n_external=n_ext,
        n_matched=n_matched,
        n_bricks=n_read,
        n_bricks_missing=n_missing,
        radius_arcsec=float(radius_arcsec),
    )


def _assign(
    matched: npt.NDArray[np.void],
    rows: npt.NDArray[np.intp],
    objects: npt.NDArray[np.void],
    path: Path,
) -> None:
    """Copy ``objects`` into ``matched[rows]`` column by column (catalogue dtypes may differ)."""
    have = set(objects.dtype.names or ())
    for name in matched.dtype.names or ():
        if name not in have:
            raise InputFileError(f"{path}: tractor catalogue has no {name} column")
        matched[name][rows] = objects[name]


def _write_matched(
    path: Path,
    matched: npt.NDArray[np.void],
    copied: npt.NDArray[np.void],
    units: Sequence[str],
    catalogue: ExternalCatalogue,
    radius_arcsec: float,
    n_matched: int,
) -> None:
    """Write the tractor columns then the copy columns, extension ``MATCHED``."""
    import fitsio

    fields: list[tuple[str, Any]] = [(n, matched.dtype[n]) for n in matched.dtype.names or ()] + [
        (n, copied.dtype[n]) for n in copied.dtype.names or ()
    ]
    out = np.zeros(len(matched), np.dtype(fields))
    for n in matched.dtype.names or ():
        out[n] = matched[n]
    for n in copied.dtype.names or ():
        out[n] = copied[n]
    all_units = [*units, *([""] * len(copied.dtype.names or ()))]
    header = [
        {"name": "NMATCHED", "value": n_matched, "comment": "External rows with a match"},
        {"name": "RADIUS", "value": float(radius_arcsec), "comment": "Match radius (arcsec)"},
        {"name": "CATNAME", "value": catalogue.name, "comment": "External catalogue name"},
        {"name": "EXTERNAL", "value": Path(catalogue.path).name, "comment": "External file"},
    ]
    with atomic_path(path) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as f:
        f.write(out, extname=MATCHED_EXTNAME, header=header, units=all_units)


def read_matched(path: Path) -> npt.NDArray[np.void]:
    """An external-match file's table (for tests and summaries)."""
    import fitsio

    return np.asarray(fitsio.read(str(path), ext=MATCHED_EXTNAME))


def catalogue_names(catalogues: Iterable[ExternalCatalogue]) -> list[str]:
    """The output names of a catalogue list, checked to be distinct."""
    names = [c.name for c in catalogues]
    if len(set(names)) != len(names):
        raise UsageError(f"external catalogue names repeat: {names}")
    return names
