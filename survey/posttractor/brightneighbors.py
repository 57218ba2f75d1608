"""Bright neighbours: extend a bright star's mask to the blobs it touches across a brick border.

A bright star's BRIGHT (or MEDIUM) mask that crosses the border between two bricks marks, in
each brick, the blobs it touches at that border: those blobs get the bit over their whole
extent, in the brick's maskbits image and in the catalogue's ``maskbits`` of the sources in
them (the map value at (round(by), round(bx)), as runbrick sets it).  This is DR7's
bright-neighbour post-processing (``bright-neighbors.py``, run after ``copymaskbits.py``
backed the originals up): the neighbour's BRIGHT pixels on the ring just outside its unique
area that fall in this brick's unique area select this brick's blobs.  MEDIUM is treated the
same way.  The lite runbrick already draws the mask circles of stars outside the brick whose
radius reaches it, so circles match across the border; what this step adds is the blob rule:
a source fitted in a blob cut by a bright star's mask at the border is flagged like the rest
of that blob.  Documented in ``docs/postprocess.md``.

Originals are backed up beside the products before the first rewrite
(``legacysurvey-<brick>-maskbits-orig.fits.fz``, ``tractor-<brick>-orig.fits``), and a rewritten
file carries the header key ``BRIGHTNB``.  Every run computes from the originals (this brick's
and its neighbours'), so a second run changes nothing and the order of bricks does not matter;
a product without the key (runbrick ran again) is itself the original and refreshes the
backup.  ``tractor-i`` keeps runbrick's values, as in DR7.  The brick's checksum file is updated
for the files rewritten.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.core import bricks as grid
from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.fileio import atomic_path, write_text_atomic
from lsdr.survey.core.fitsread import fits_failure, image_hdu_index, read_image
from lsdr.survey.core.layout import ReleaseLayout, checked_brick
from lsdr.survey.core.tan import TanWcs

MARKER = "BRIGHTNB"
"""Header key of a maskbits image / catalogue this step rewrote (value: the bits it extends)."""
DEFAULT_BITS = {"NPRIMARY": 1, "BRIGHT": 2, "MEDIUM": 2048}
"""legacypipe's bit values, used when a maskbits header has no ``MB_<name>`` key."""
EXTENDED = ("BRIGHT", "MEDIUM")
"""The mask bits extended to the blobs they touch across a border."""
EDGE_SAMPLES = 16
"""Points per brick edge used to find the neighbouring bricks."""

_STRUCTURAL = re.compile(
    r"^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|PCOUNT|GCOUNT|TFIELDS|EXTEND|EXTNAME|CHECKSUM|DATASUM"
    r"|TTYPE\d+|TFORM\d+|TUNIT\d+|BSCALE|BZERO"
    r"|Z(IMAGE|SIMPLE|BITPIX|NAXIS\d*|TILE\d+|CMPTYPE|NAME\d+|VAL\d+|QUANTIZ|DITHER0|EXTEND"
    r"|PCOUNT|GCOUNT|HECKSUM|DATASUM|BLANK|SCALE|ZERO|TENSION))$"
)
"""Header keys fitsio writes itself (structure, tile compression), never copied."""


@dataclass(frozen=True)
class BrightNeighbourResult:
    """What the step did to one brick: pixels and catalogue rows changed, neighbours read."""

    brick: str
    pixels_changed: int
    """Pixels of the maskbits image that differ from the original."""
    sources_changed: int
    """Catalogue rows whose ``maskbits`` differ from the original."""
    neighbours: tuple[str, ...]
    """The neighbouring bricks whose maskbits were read."""
    backup: str
    """The maskbits backup (``…-maskbits-orig.fits.fz``); "" when the brick is unchanged."""


def grid_neighbours(brick: str) -> list[str]:
    """The bricks of the grid that share an edge or a corner with ``brick`` (usually 8)."""
    if grid.is_custom_brickname(brick):
        return []
    b = grid.brick_by_name(brick)
    eps = 1e-6
    t = np.linspace(0.0, 1.0, EDGE_SAMPLES)
    dra = (b.ra2 - b.ra1) % 360.0 or 360.0
    ras = np.concatenate(
        [
            b.ra1 + t * dra,
            b.ra1 + t * dra,
            np.full_like(t, b.ra1 - eps),
            np.full_like(t, b.ra2 + eps),
        ]
    )
    decs = np.concatenate(
        [
            np.full_like(t, b.dec1 - eps),
            np.full_like(t, b.dec2 + eps),
            b.dec1 + t * (b.dec2 - b.dec1),
            b.dec1 + t * (b.dec2 - b.dec1),
        ]
    )
    corners_ra = np.array([b.ra1 - eps, b.ra2 + eps, b.ra1 - eps, b.ra2 + eps])
    corners_dec = np.array([b.dec1 - eps, b.dec1 - eps, b.dec2 + eps, b.dec2 + eps])
    ras = np.concatenate([ras, corners_ra]) % 360.0
    decs = np.clip(np.concatenate([decs, corners_dec]), -90.0, 90.0)
    ids = np.unique(grid.brickid_radec(ras, decs))
    names = {grid.brick_by_id(int(i)).brickname for i in ids}
    names.discard(b.brickname)
    return sorted(names)


def neighbour_bricks(layout: ReleaseLayout, brick: str) -> list[str]:
    """The up-to-8 bricks around ``brick`` that have a maskbits image (their products)."""
    out = []
    for name in grid_neighbours(checked_brick(brick)):
        if layout.coadd_maskbits(name).is_file() or layout.coadd_maskbits_orig(name).is_file():
            out.append(name)
    return out


# -- reading -------------------------------------------------------------------------------------


def _read_header(path: Path, ext: int | str) -> Any:
    import fitsio

    if not path.is_file():
        raise InputFileError(f"{path}: file not found")
    try:
        return fitsio.read_header(str(path), ext=ext)
    except (OSError, ValueError, RuntimeError) as err:
        raise fits_failure(path, err) from err


def _wcs(header: Any, path: Path) -> TanWcs:
    try:
        keys = ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2")
        return TanWcs(*(float(header[k]) for k in keys))
    except (KeyError, TypeError, ValueError) as err:
        raise InputFileError(f"{path}: no TAN WCS in the header ({err})") from err


def _bits(header: Any) -> dict[str, int]:
    out = {}
    for name, default in DEFAULT_BITS.items():
        try:
            out[name] = int(header[f"MB_{name}"])
        except (KeyError, TypeError, ValueError):
            out[name] = default
    return out


def _is_marked(path: Path, ext: int | str) -> bool:
    return MARKER in _read_header(path, ext)


def read_original_maskbits(layout: ReleaseLayout, brick: str) -> tuple[npt.NDArray[Any], Any, Path]:
    """The brick's original maskbits image, its header and its file (the backup once rewritten).

    The product is read through one open handle, so a neighbour's step replacing it meanwhile
    (atomically, after writing the backup) gives either runbrick's file or the backup.
    """
    current, backup = layout.coadd_maskbits(brick), layout.coadd_maskbits_orig(brick)
    if not current.is_file():
        raise InputFileError(f"{current}: file not found")
    import fitsio

    try:
        with fitsio.FITS(str(current)) as f:
            i = image_hdu_index(f, current)
            header = f[i].read_header()
            if MARKER not in header:
                return f[i].read(), header, current
    except InputFileError:
        raise
    except (OSError, ValueError, RuntimeError) as err:
        raise fits_failure(current, err) from err
    if not backup.is_file():
        raise InputFileError(f"{backup}: backup of the updated {current.name} not found")
    data, header = read_image(backup)
    return data, header, backup


def original_catalogue(layout: ReleaseLayout, brick: str) -> Path:
    """The brick's original tractor catalogue: the backup once this step rewrote it."""
    current, backup = layout.tractor(brick), layout.tractor_orig(brick)
    marked = _is_marked(current, 0)
    if marked and not backup.is_file():
        raise InputFileError(f"{backup}: backup of the updated {current.name} not found")
    return backup if marked else current


def _read_catalogue(path: Path) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]:
    """(maskbits, bx, by) of a tractor catalogue (HDU 1)."""
    import fitsio

    try:
        with fitsio.FITS(str(path)) as f:
            hdu = f[1]
            nrows = hdu.get_nrows()
            cols = hdu.read(columns=["maskbits", "bx", "by"]) if nrows else None
    except (OSError, ValueError, RuntimeError) as err:
        raise fits_failure(path, err) from err
    if cols is None:
        empty = np.zeros(0)
        return empty.astype(np.int32), empty, empty
    if len(cols) != nrows:
        raise InputFileError(f"{path}: read {len(cols)} of {nrows} rows (truncated)")
    return cols["maskbits"], cols["bx"], cols["by"]


# -- the rule ------------------------------------------------------------------------------------


def _in_unique_area(ra: npt.NDArray[Any], dec: npt.NDArray[Any], b: grid.Brick) -> Any:
    """ra1 ≤ RA < ra2 (wrapping through 0) and dec1 ≤ Dec < dec2: brick_primary's test."""
    ra_ok = (ra >= b.ra1) | (ra < b.ra2) if b.ra1 > b.ra2 else (ra >= b.ra1) & (ra < b.ra2)
    return ra_ok & (dec >= b.dec1) & (dec < b.dec2)


def border_blobs(
    blobs: npt.NDArray[Any],
    wcs: TanWcs,
    brick: grid.Brick,
    neighbour_mask: npt.NDArray[Any],
    neighbour_wcs: TanWcs,
    nprimary: int,
    bit: int,
) -> npt.NDArray[np.int64]:
    """Blob ids of this brick touched by the neighbour's ``bit`` pixels at its unique edge.

    The edge is the ring of the neighbour's non-primary pixels next to its primary ones; its
    pixels with ``bit`` set that lie in this brick's unique area are mapped onto this brick's
    grid (nearest pixel) and looked up in the blob map (−1 = no blob, ignored).
    """
    from scipy import ndimage

    mask = np.asarray(neighbour_mask).astype(np.int64)
    primary = (mask & nprimary) == 0
    if primary.all() or not primary.any():
        return np.zeros(0, np.int64)
    ring = ndimage.binary_dilation(primary, structure=np.ones((3, 3), bool)) & ~primary
    ys, xs = np.nonzero(ring & ((mask & bit) != 0))
    if len(xs) == 0:
        return np.zeros(0, np.int64)
    ra, dec = neighbour_wcs.pixel_to_radec(xs + 1.0, ys + 1.0)
    inside = _in_unique_area(ra % 360.0, dec, brick)
    x, y = wcs.radec_to_pixel(ra[inside], dec[inside])
    ix, iy = np.rint(x - 1.0).astype(np.int64), np.rint(y - 1.0).astype(np.int64)
    h, w = blobs.shape
    on = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    ids = np.unique(np.asarray(blobs)[iy[on], ix[on]].astype(np.int64))
    return ids[ids >= 0]


def source_pixels(
    bx: npt.NDArray[Any], by: npt.NDArray[Any], shape: tuple[int, ...]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(row, column) of each source: (round(by), round(bx)) clipped to the grid."""
    h, w = shape
    iy = np.clip(np.rint(np.asarray(by, np.float64)), 0, h - 1).astype(np.int64)
    ix = np.clip(np.rint(np.asarray(bx, np.float64)), 0, w - 1).astype(np.int64)
    return iy, ix


# -- writing -------------------------------------------------------------------------------------


def _header_records(header: Any) -> list[dict[str, Any]]:
    """The non-structural records of a header, in order, to write into a new HDU."""
    out = []
    for rec in header.records():
        name = str(rec.get("name", ""))
        if not name or _STRUCTURAL.match(name.upper()) or name.upper() == MARKER:
            continue
        if name.upper() in ("COMMENT", "HISTORY") and "FITS (Flexible" in str(rec.get("value")):
            continue
        if name.upper() in ("COMMENT", "HISTORY") and "Astrophysics', volume 376" in str(
            rec.get("value")
        ):
            continue
        out.append(rec)
    return out


def _write_maskbits(src: Path, dest: Path, mask: npt.NDArray[Any], marker: str) -> None:
    """Copy ``src``'s image HDUs into ``dest`` with the first image replaced by ``mask``."""
    import fitsio

    with fitsio.FITS(str(src)) as f:
        main = image_hdu_index(f, src)
        hdus = []
        for i, hdu in enumerate(f):
            if hdu.get_exttype() != "IMAGE_HDU" or not hdu.has_data():
                continue
            hdr = hdu.read_header()
            data = mask.astype(hdu.read().dtype) if i == main else hdu.read()
            recs = _header_records(hdr)
            if i == main:
                recs.append({"name": MARKER, "value": marker, "comment": "bright-neighbour step"})
            hdus.append((data, recs, hdu.get_extname(), hdu.is_compressed()))
        primary = _header_records(f[0].read_header()) if main != 0 else []
    with atomic_path(dest) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as out:
        for data, recs, extname, compressed in hdus:
            kwargs: dict[str, Any] = {"compress": "HCOMPRESS"} if compressed else {}
            out.write(data, header=recs, extname=extname or None, **kwargs)
        if primary:
            out[0].write_keys(primary)


def _write_catalogue(src: Path, dest: Path, maskbits: npt.NDArray[Any], marker: str) -> None:
    """``src`` with its ``maskbits`` column replaced and the marker in the primary header."""
    import fitsio

    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
        with fitsio.FITS(str(tmp), "rw") as f:
            column = (
                f[1].read(columns=["maskbits"], rows=[0])["maskbits"] if len(maskbits) else None
            )
            if column is not None:
                f[1].write_column("maskbits", maskbits.astype(column.dtype))
            f[0].write_key(MARKER, marker, comment="bright-neighbour step")


def _copy_atomic(src: Path, dest: Path) -> None:
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)


def _update_checksums(layout: ReleaseLayout, brick: str, paths: list[Path]) -> None:
    """Rewrite the lines of ``paths`` in the brick's checksum file (appending unlisted ones)."""
    from lsdr.survey.core.fileio import sha256_file

    sums = layout.brick_checksums(brick)
    if not sums.is_file():
        raise InputFileError(f"{sums}: brick checksum file not found")
    lines = sums.read_text().splitlines()
    rels = {p.relative_to(layout.root).as_posix(): p for p in paths}
    out, seen = [], set()
    for line in lines:
        _, _, rel = line.partition(" *")
        if rel in rels:
            line = f"{sha256_file(rels[rel])} *{rel}"
            seen.add(rel)
        out.append(line)
    must = (layout.coadd_maskbits(brick), layout.tractor(brick))
    for rel, path in rels.items():
        if rel not in seen and path in must:
            out.append(f"{sha256_file(path)} *{rel}")
    write_text_atomic(sums, "".join(f"{line}\n" for line in out))


# -- the step ------------------------------------------------------------------------------------


def update_bright_neighbours(layout: ReleaseLayout, brick: str) -> BrightNeighbourResult:
    """Extend BRIGHT/MEDIUM to this brick's blobs cut by a neighbour's mask at the border.

    Reads the originals of this brick's maskbits and catalogue, its blob map and the original
    maskbits of its neighbours; rewrites the maskbits image and catalogue (after backing them
    up) only when they differ from what the rule gives, and restores the originals when a
    rewritten brick no longer needs the change.  Missing or truncated products raise
    ``InputFileError`` naming the file; a neighbour without products is skipped.
    """
    brick = checked_brick(brick)
    mask_path, cat_path = layout.coadd_maskbits(brick), layout.tractor(brick)
    mask0, header, mask_orig_path = read_original_maskbits(layout, brick)
    cat_orig_path = original_catalogue(layout, brick)
    wcs = _wcs(header, mask_orig_path)
    bits = _bits(header)
    blob_path = layout.metrics(brick, "blobs")
    blobs, _ = read_image(blob_path)
    if blobs.shape != mask0.shape:
        raise InputFileError(f"{blob_path}: shape {blobs.shape} is not the maskbits {mask0.shape}")
    neighbours = tuple(neighbour_bricks(layout, brick))
    added = np.zeros(mask0.shape, np.int64)
    if neighbours:
        b = grid.brick_by_name(brick)
        for name in neighbours:
            nmask, nheader, npath = read_original_maskbits(layout, name)
            nbits, nwcs = _bits(nheader), _wcs(nheader, npath)
            for bit in EXTENDED:
                ids = border_blobs(blobs, wcs, b, nmask, nwcs, nbits["NPRIMARY"], nbits[bit])
                if len(ids):
                    added[np.isin(blobs, ids)] |= bits[bit]
    mask0_64 = np.asarray(mask0).astype(np.int64)
    mask1 = mask0_64 | added
    pixels_changed = int(np.count_nonzero(mask1 != mask0_64))
    cat0, bx, by = _read_catalogue(cat_orig_path)
    iy, ix = source_pixels(bx, by, mask0.shape)
    cat1 = np.asarray(cat0).astype(np.int64) | added[iy, ix]
    sources_changed = int(np.count_nonzero(cat1 != cat0))
    changed = pixels_changed > 0 or sources_changed > 0
    gained = mask1 & ~mask0_64
    marker = "+".join(n for n in EXTENDED if (gained & bits[n]).any()) or "none"
    rewritten: list[Path] = []
    if not changed:
        for current, orig in ((mask_path, mask_orig_path), (cat_path, cat_orig_path)):
            if orig != current:  # rewritten before, no longer needed: restore runbrick's file
                _copy_atomic(orig, current)
                rewritten.append(current)
    else:
        mask_bak, cat_bak = layout.coadd_maskbits_orig(brick), layout.tractor_orig(brick)
        pairs = ((mask_path, mask_orig_path, mask_bak), (cat_path, cat_orig_path, cat_bak))
        for current, orig, bak in pairs:
            if orig == current:
                _copy_atomic(current, bak)
                rewritten.append(bak)
        mask_now, _ = read_image(mask_path)
        if not (_is_marked_image(mask_path) and np.array_equal(mask_now.astype(np.int64), mask1)):
            _write_maskbits(mask_bak, mask_path, mask1, marker)
            rewritten.append(mask_path)
        cat_now, _, _ = _read_catalogue(cat_path)
        if not (_is_marked(cat_path, 0) and np.array_equal(np.asarray(cat_now, np.int64), cat1)):
            _write_catalogue(cat_bak, cat_path, cat1, marker)
            rewritten.append(cat_path)
    if rewritten:
        _update_checksums(layout, brick, rewritten)
    return BrightNeighbourResult(
        brick=brick,
        pixels_changed=pixels_changed,
        sources_changed=sources_changed,
        neighbours=neighbours,
        backup=str(layout.coadd_maskbits_orig(brick)) if changed else "",
    )


def _is_marked_image(path: Path) -> bool:
    import fitsio

    with fitsio.FITS(str(path)) as f:
        return MARKER in f[image_hdu_index(f, path)].read_header()
