"""One engine's run of a brick as the comparison reads it: catalogue, maps and cost.

The catalogue keeps the rows a release counts (``brick_primary``, not ``DUP``, with data in
some band: :func:`measured`); maps are optional (a run without coadds is compared on its
catalogue alone, with a note), a catalogue is not: a missing or unreadable one is an
:class:`InputFileError` naming the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.bricks import BRICK_PIXSCALE, BRICK_SIZE_PIX
from lsdr.survey.core.errors import InputFileError, SurveyError
from lsdr.survey.core.fitsread import catalogue_hdu, fits_failure, read_image
from lsdr.survey.core.layout import ReleaseLayout, checked_brick
from lsdr.survey.runbrick import tractorschema as ts

ENGINES = ("lite", "legacypipe")
"""The two engines, in the order every table shows them."""
CATALOG_COLUMNS = ("ra", "dec", "type", "brick_primary")
"""Columns the comparison needs besides the per-band fluxes and their ivars."""
OPTIONAL_COLUMNS = ("bx", "by", "ref_cat", "ref_epoch")
"""Columns read when present (the truth match uses them)."""


@dataclass(frozen=True)
class EngineCost:
    """A brick's wall time and peak memory for one engine, from its release's ledger."""

    wall_s: float | None = None
    peak_mem_mb: float | None = None


@dataclass
class EngineBrick:
    """What one engine wrote for a brick, read once."""

    engine: str
    brick: str
    root: Path
    catalog: npt.NDArray[np.void]
    """The counted rows: ``brick_primary``, type not ``DUP``, measured in some band."""
    n_rows: int
    """All rows of the catalogue file."""
    maskbits: npt.NDArray[np.int64] | None = None
    maskbit_values: dict[str, int] = field(default_factory=dict)
    """Bit name → value, from the map's ``MB_*`` header cards (the flavour's table without)."""
    grid: tuple[int, int, float] | None = None
    """(width, height, pixscale ″) when the maps cover the whole brick; None for a zoomed run."""
    depth: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def layout(self) -> ReleaseLayout:
        """The run's directory as a release layout."""
        return ReleaseLayout(self.root)


def catalog_bricks(root: Path) -> list[str]:
    """The bricks with a catalogue ``tractor/<bri>/tractor-<brick>.fits`` under ``root``."""
    layout = ReleaseLayout(root)
    found = []
    for path in sorted(layout.tractor_dir.glob("*/tractor-*.fits")):
        name = path.name.removeprefix("tractor-").removesuffix(".fits")
        try:
            if layout.tractor(name) == path:
                found.append(name)
        except SurveyError:  # tractor-<brick>-orig.fits and strays: not a brick's catalogue
            continue
    return found


def read_catalog(path: Path, bands: Sequence[str]) -> tuple[npt.NDArray[np.void], int, int]:
    """A catalogue's counted rows (primary, not DUP, measured), its rows, the unmeasured ones."""
    import fitsio

    if not path.is_file():
        raise InputFileError(f"{path}: tractor catalogue missing")
    need = (*CATALOG_COLUMNS, *(f"flux_{b}" for b in bands), *(f"flux_ivar_{b}" for b in bands))
    try:
        with fitsio.FITS(str(path)) as fits:
            hdu, have = catalogue_hdu(fits, path, need)
            columns = [have[c] for c in (*need, *OPTIONAL_COLUMNS) if c in have]
            rows = int(hdu.get_nrows())
            if rows:
                data = np.asarray(hdu.read(columns=columns))
            else:  # an empty catalogue: its columns, no rows
                data = np.zeros(0, hdu.get_rec_dtype(columns=columns)[0])
    except InputFileError:
        raise
    except (OSError, ValueError, RuntimeError) as err:
        raise fits_failure(path, err) from err
    data.dtype.names = tuple(n.lower() for n in data.dtype.names or ())
    kind = np.char.strip(np.asarray(data["type"]).astype("U3"))
    keep = np.asarray(data["brick_primary"]).astype(bool) & (kind != "DUP")
    seen = measured(data, bands)
    return data[keep & seen], rows, int(np.sum(keep & ~seen))


def measured(catalog: npt.NDArray[np.void], bands: Sequence[str]) -> npt.NDArray[np.bool_]:
    """Rows with ``flux_ivar`` > 0 in some band: a reference star off the data is not a source.

    legacypipe keeps the Gaia stars of the brick that a ``--zoom`` cut-out leaves without
    pixels, with flux and ivar 0; no engine could have detected them.
    """
    seen = np.zeros(len(catalog), bool)
    for b in bands:
        seen |= np.nan_to_num(np.asarray(catalog[f"flux_ivar_{b}"], np.float64)) > 0
    return seen


def maskbit_values(header: Any, bands: Sequence[str]) -> dict[str, int]:
    """Bit name → value from a maskbits map's ``MB_<NAME>`` cards, else DR11's for the bands."""
    found = {}
    for key in header.keys() if header is not None else ():
        if key.startswith("MB_"):
            try:
                found[key[3:]] = int(header[key])
            except (TypeError, ValueError):
                continue
    return found or ts.maskbits(bands, "dr11")


def brick_grid(header: Any, shape: tuple[int, ...]) -> tuple[int, int, float] | None:
    """(width, height, pixscale) of maps covering the whole brick; None for a zoomed region.

    The whole brick is 3600 × 0.262″ on a side at any binning, its reference pixel the map's
    centre; a ``--zoom`` run's maps are a cut-out (another size or reference pixel).
    """
    height, width = int(shape[0]), int(shape[1])
    side = BRICK_SIZE_PIX * BRICK_PIXSCALE
    cd = header.get("CD2_2") if header is not None else None
    pixscale = abs(float(cd)) * 3600.0 if cd else side / width
    crpix = (header.get("CRPIX1"), header.get("CRPIX2")) if header is not None else (None, None)
    centred = all(
        c is None or abs(float(c) - (n / 2.0 + 0.5)) < 0.51
        for c, n in zip(crpix, (width, height), strict=True)
    )
    if abs(width * pixscale - side) > pixscale or abs(height * pixscale - side) > pixscale:
        return None
    return (width, height, pixscale) if centred else None


def read_engine_brick(engine: str, root: Path, brick: str, bands: Sequence[str]) -> EngineBrick:
    """Read one engine's products of a brick (catalogue required, maps when present)."""
    layout = ReleaseLayout(root)
    brick = checked_brick(brick)
    path = layout.tractor(brick)
    if not path.is_file():
        raise InputFileError(
            f"{path}: no {engine} catalogue of brick {brick} (run it with --engine {engine})"
        )
    catalog, n_rows, unmeasured = read_catalog(path, bands)
    run = EngineBrick(engine, brick, Path(root), catalog, n_rows)
    if unmeasured:
        run.notes.append(
            f"{engine}: {unmeasured} primary source{'s' if unmeasured > 1 else ''} without "
            "data in any band (flux_ivar 0) left out"
        )
    mpath = layout.coadd_maskbits(brick)
    if mpath.is_file():
        data, header = read_image(mpath)
        run.maskbits = np.asarray(data, np.int64)
        run.maskbit_values = maskbit_values(header, bands)
        run.grid = brick_grid(header, run.maskbits.shape)
    else:
        run.notes.append(f"{engine}: no maskbits map ({mpath.relative_to(layout.root)})")
    for b in bands:
        dpath = layout.coadd(brick, "depth", b)
        if dpath.is_file():
            run.depth[b] = np.asarray(read_image(dpath)[0], np.float64)
        else:
            run.notes.append(f"{engine}: no {b} depth map ({dpath.relative_to(layout.root)})")
    return run


def ledger_costs(root: Path, bricks: Sequence[str]) -> dict[str, EngineCost]:
    """Each brick's tractor-unit wall time and peak memory from the run's own ledger.

    The ledger is the one a release run by the flows keeps in ``state/`` (``lsdr runbrick``
    keeps none: then nothing is known and the result is empty).
    """
    from lsdr.infra.ledger import Ledger, default_url

    ledger = Ledger.existing(default_url(ReleaseLayout(root).state_dir))
    if ledger is None:
        return {}
    try:
        rows = ledger.rows_of("tractor", list(bricks))
    finally:
        ledger.close()
    return {k: EngineCost(r.wall_s, r.peak_mem_mb) for k, r in rows.items()}
