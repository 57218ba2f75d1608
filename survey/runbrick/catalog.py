"""Stage ``writecat``: fitted sources → the DR tractor catalogue, the maskbits image, metrics.

Per-source values that live on the brick grid (``psfdepth``, ``galdepth``, ``psfsize``) are read
from the coadd files the ``coadds`` stage wrote, at the source's pixel, as legacypipe reads its
coadd maps; ``nobs``, ``anymask`` and ``allmask`` come from the per-band DQ maps
(``dqmaps.py``: exposures covering the pixel, OR / AND of their DQ bits); ``maskbits`` from the
maskbits image written here: NPRIMARY outside the brick's unique area (``primary.py``),
BRIGHT/MEDIUM from the reference stars, SATUR_<b> and ALLMASK_<b> from the DQ maps, BAILOUT
where ``--bail-out`` skipped blobs.  The stage also writes the brick's metrics files
(``metrics.py``) before the checksum file, which covers them.  The schema (columns, header
cards, maskbit values) is ``RunbrickOptions.release_flavour``'s: dr10 unless asked.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.runbrick import tractorschema as ts
from lsdr.survey.runbrick.dqmaps import BandMasks, band_masks
from lsdr.survey.runbrick.fit import FITBITS_KEY
from lsdr.survey.runbrick.metrics import brick_header, write_metrics
from lsdr.survey.runbrick.options import RunbrickOptions
from lsdr.survey.runbrick.primary import unique_pixels
from lsdr.survey.runbrick.refs import REF_BRIGHT, REF_CLUSTER, REF_GALAXY, REF_MEDIUM
from lsdr.survey.runbrick.types import BrickGeometry, Source, Tim
from lsdr.survey.runbrick.writecat import finalize_catalog, write_catalog

log = logging.getLogger("lsdr.survey.runbrick")


def maskbits_image(
    geom: BrickGeometry,
    bits: dict[str, int],
    refmap: npt.NDArray[np.integer[Any]] | None,
    bailout_mask: npt.NDArray[np.bool_] | None,
    masks: Sequence[BandMasks] = (),
    unique: npt.NDArray[np.bool_] | None = None,
    saturated_pix: Mapping[str, npt.NDArray[np.bool_]] | None = None,
) -> npt.NDArray[np.int32]:
    """The brick's maskbits map: NPRIMARY, BRIGHT, MEDIUM, CLUSTER, SATUR_<b>, ALLMASK_<b>, BAILOUT.

    ``bits`` is the flavour's ``ts.maskbits``; ``refmap`` the ``refs`` stage's map (its
    ``REF_*`` bits, set as ``bits``' BRIGHT/MEDIUM/GALAXY/CLUSTER); ``unique`` is the
    brick's unique-pixel map (computed when not given); ``masks`` the per-band DQ maps
    (ALLMASK_<b> where ``andmask`` ≠ 0; SATUR_<b> where ``satur``, unless ``saturated_pix``
    gives the ``srcs`` stage's saturation maps, which legacypipe's SATUR bits are).
    """
    out = np.zeros((geom.height, geom.width), np.int32)
    if unique is None:
        unique = unique_pixels(geom)
    out[~unique] |= bits["NPRIMARY"]
    if refmap is not None:
        ref = np.asarray(refmap, np.int32)
        for name, bit in (
            ("BRIGHT", REF_BRIGHT),
            ("MEDIUM", REF_MEDIUM),
            ("GALAXY", REF_GALAXY),
            ("CLUSTER", REF_CLUSTER),
        ):
            out[(ref & bit) != 0] |= bits[name]
    for m in masks:
        band = m.band.upper()
        satur, allmask = bits.get(f"SATUR_{band}"), bits.get(f"ALLMASK_{band}")
        if satur is not None and saturated_pix is None:
            out[m.satur] |= satur
        if allmask is not None:
            out[m.andmask != 0] |= allmask
    for band, sat in (saturated_pix or {}).items():
        satur_bit = bits.get(f"SATUR_{band.upper()}")
        if satur_bit is not None:
            out[np.asarray(sat, bool)] |= satur_bit
    if bailout_mask is not None:
        out[np.asarray(bailout_mask, bool)] |= bits["BAILOUT"]
    return out


def maskbits_header(geom: BrickGeometry, bits: dict[str, int]) -> list[dict[str, Any]]:
    """Header of ``-maskbits.fits.fz``: brick WCS, IMTYPE, MB_<name>/MBIT_<n> and AM_ DQ bits."""
    recs = brick_header(geom, "maskbits")
    descriptions = ts.maskbits_descriptions(bits)
    recs += [
        {"name": f"MB_{name}", "value": value, "comment": f"maskbit: {descriptions[name]}"}
        for name, value in bits.items()
    ]
    recs += [
        {
            "name": f"MBIT_{value.bit_length() - 1}",
            "value": name,
            "comment": f"maskbit {value.bit_length() - 1} (0x{value:x}): {descriptions[name]}",
        }
        for name, value in sorted(bits.items(), key=lambda kv: kv[1])
    ]
    recs += [
        {"name": f"AM_{name.upper()}", "value": value, "comment": "allmask/anymask DQ bit"}
        for name, value in ts.DQ_BITS.items()
    ]
    return recs


def write_maskbits(
    path: Path,
    mask: npt.NDArray[np.int32],
    bits: dict[str, int],
    geom: BrickGeometry | None = None,
) -> Path:
    """``-maskbits.fits.fz`` (HDU MASKBITS, HCOMPRESS as legacypipe) with the MB_* bit keys."""
    import fitsio

    from lsdr.survey.core.fileio import atomic_path

    if geom is not None:
        header = maskbits_header(geom, bits)
    else:
        header = [
            {"name": f"MBIT_{value.bit_length() - 1}", "value": name, "comment": "maskbits bit"}
            for name, value in bits.items()
        ]
    with atomic_path(path) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as out:
        out.write(mask, header=header, extname="MASKBITS", compress="HCOMPRESS")
    return path


def _map_values(path: Path, x: npt.NDArray[np.int64], y: npt.NDArray[np.int64]) -> Any:
    """Values of a coadd map at pixels (x, y); None when the map was not written."""
    import fitsio

    if not path.exists():
        return None
    data = fitsio.read(str(path), ext=1)
    return data[np.clip(y, 0, data.shape[0] - 1), np.clip(x, 0, data.shape[1] - 1)]


def sources_to_catalog(
    sources: Sequence[Source],
    bands: Sequence[str],
    layout: ReleaseLayout,
    geom: BrickGeometry,
    masks: Sequence[BandMasks] = (),
    *,
    release_flavour: str = "dr10",
    wise: bool = True,
) -> npt.NDArray[np.void]:
    """The catalogue rows of the fitted sources (derived columns are filled by finalize).

    The columns are the ``release_flavour`` schema's for ``bands`` (with the WISE ones when
    ``wise``), as ``RunbrickOptions.release_flavour`` / ``wise_columns`` choose.

    Map values are taken at the source's rounded pixel (clipped to the grid): ``nobs``,
    ``anymask``, ``allmask`` from ``masks`` (``nobs`` from the ``nexp`` coadd for a band
    without DQ maps), the depths and PSF size from the coadd files.
    """
    cat = ts.empty_catalog(len(sources), bands, release_flavour=release_flavour, wise=wise)
    for i, s in enumerate(sources):
        row = cat[i]
        row["ra"], row["dec"], row["type"] = s.ra, s.dec, s.type
        row["ra_ivar"], row["dec_ivar"] = s.ra_ivar, s.dec_ivar
        row["bx"], row["by"] = s.bx, s.by
        row["shape_r"], row["shape_r_ivar"] = s.shape_r, s.shape_r_ivar
        row["shape_e1"], row["shape_e2"] = s.shape_e1, s.shape_e2
        row["shape_e1_ivar"], row["shape_e2_ivar"] = s.shape_e1_ivar, s.shape_e2_ivar
        row["sersic"] = s.sersic
        row["ref_cat"] = s.ref_cat
        row["ref_id"] = max(int(s.ref_id), 0)  # legacypipe writes 0 without a reference
        row["dchisq"] = np.asarray(s.dchisq, np.float32)[:5]
        bits = s.extra.get(FITBITS_KEY, 0)
        row["fitbits"] = bits if isinstance(bits, int) else 0
        for b in bands:
            row[f"flux_{b}"] = s.flux.get(b, 0.0)
            row[f"flux_ivar_{b}"] = s.flux_ivar.get(b, 0.0)
            row[f"rchisq_{b}"] = s.rchisq.get(b, 0.0)
            row[f"fracflux_{b}"] = s.fracflux.get(b, 0.0)
            row[f"fracmasked_{b}"] = s.fracmasked.get(b, 0.0)
            row[f"fracin_{b}"] = s.fracin.get(b, 1.0)
    if len(sources):
        # The pixel finalize_catalog samples maskbits at: (ra, dec) on the brick grid, rounded.
        px, py = geom.wcs().radec_to_pixel(cat["ra"], cat["dec"])
        x = np.clip(np.round((px - 1.0).astype(np.float32)).astype(np.int64), 0, geom.width - 1)
        y = np.clip(np.round((py - 1.0).astype(np.float32)).astype(np.int64), 0, geom.height - 1)
        by_band = {m.band: m for m in masks}
        for b in bands:
            kinds = [
                (f"psfdepth_{b}", "depth"),
                (f"galdepth_{b}", "galdepth"),
                (f"psfsize_{b}", "psfsize"),
            ]
            m = by_band.get(b)
            if m is not None:
                cat[f"nobs_{b}"] = m.nobs[y, x]
                cat[f"anymask_{b}"] = m.ormask[y, x]
                cat[f"allmask_{b}"] = m.andmask[y, x]
            else:
                kinds.append((f"nobs_{b}", "nexp"))
            for column, kind in kinds:
                values = _map_values(layout.coadd(geom.brickname, kind, b), x, y)
                if values is not None:
                    cat[column] = values
    return cat


def stage_writecat(
    *,
    layout: ReleaseLayout,
    geom: BrickGeometry,
    bands: Sequence[str],
    sources: Sequence[Source],
    options: RunbrickOptions,
    tims: Sequence[Tim] = (),
    refs: npt.NDArray[np.void] | None = None,
    refmap: npt.NDArray[np.integer[Any]] | None = None,
    blobmap: npt.NDArray[np.integer[Any]] | None = None,
    bailout_mask: npt.NDArray[np.bool_] | None = None,
    coadd_products: Sequence[Path] = (),
    saturated_pix: Mapping[str, npt.NDArray[np.bool_]] | None = None,
) -> dict[str, Any]:
    """Stage ``writecat``: maskbits image, metrics, tractor and tractor-i catalogues, checksums."""
    flavour, wise = options.release_flavour, options.wise_columns
    bits = ts.maskbits(bands, flavour)
    masks = [band_masks(tims, geom, b) for b in bands] if tims else []
    mask = maskbits_image(geom, bits, refmap, bailout_mask, masks, saturated_pix=saturated_pix)
    mask_path = write_maskbits(layout.coadd_maskbits(geom.brickname), mask, bits, geom)
    metrics = write_metrics(layout, geom, refs, blobmap)
    cat = sources_to_catalog(
        sources, bands, layout, geom, masks, release_flavour=flavour, wise=wise
    )
    del masks
    regular = np.array([bool(s.extra.get("regular", True)) for s in sources], bool)
    cat = finalize_catalog(
        cat,
        geom,
        bands=bands,
        release=options.release,
        maskbits_map=mask,
        regular=regular if len(sources) else None,
    )
    paths = write_catalog(
        layout,
        geom,
        cat,
        bands=bands,
        release=options.release,
        release_flavour=flavour,
        wise=wise,
    )
    log.info("%s: wrote %d sources to %s", geom.brickname, len(cat), paths.tractor)
    return {
        "catalog_products": [mask_path, *metrics, paths.tractor, paths.tractor_i, paths.checksums],
        "n_sources": len(cat),
    }
