"""Types shared by the lite runbrick's stages: the brick's pixel grid, one CCD's pixels, a source.

Every runbrick module imports these; keeping them in one small module keeps the stage state
(a plain dict passed from stage to stage, and pickled between runs) made of the same classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.bricks import (
    BRICK_PIXSCALE,
    BRICK_SIZE_PIX,
    brick_by_name,
    checked_target,
    custom_brickname,
)
from lsdr.survey.core.tan import TanWcs
from lsdr.survey.pretractor.psfex import PsfModel


@dataclass(frozen=True)
class BrickGeometry:
    """The brick being processed: its identity, unique area and the TAN pixel grid of its coadds."""

    brickname: str
    """The brick's name on the grid (``1804p325``), or a target's ``custom-186743p25461``."""
    brickid: int
    """The grid's ``brickid`` (survey-bricks' column); −1 for a custom target."""
    ra: float
    """Centre RA, degrees: the coadds' tangent point."""
    dec: float
    """Centre Dec, degrees."""
    ra1: float
    """Unique area (BRICK_PRIMARY): RA from ``ra1`` …"""
    ra2: float
    """… to ``ra2`` (degrees)."""
    dec1: float
    """Unique area: Dec from ``dec1`` …"""
    dec2: float
    """… to ``dec2`` (degrees)."""
    width: int = BRICK_SIZE_PIX
    height: int = BRICK_SIZE_PIX
    pixscale: float = BRICK_PIXSCALE
    crpix: tuple[float, float] | None = None
    """Reference pixel of the grid; None = its centre.  ``--zoom`` grids keep the full brick's
    CRPIX shifted by the zoom's corner (legacypipe's ``get_subimage``)."""
    custom: bool = False
    """A ``--radec`` target (legacypipe's ``custom_brick``): no NPRIMARY pixels, its whole grid
    is unique; ``ra1``…``dec2`` still bound BRICK_PRIMARY for sources, as in legacypipe."""

    def wcs(self) -> TanWcs:
        """legacypipe's ``wcs_for_brick``: TAN at the centre, CRPIX W/2+0.5, CD diag(−p, p)."""
        p = self.pixscale / 3600.0
        crpix1, crpix2 = self.crpix or (self.width / 2.0 + 0.5, self.height / 2.0 + 0.5)
        return TanWcs(
            crval1=self.ra,
            crval2=self.dec,
            crpix1=crpix1,
            crpix2=crpix2,
            cd1_1=-p,
            cd1_2=0.0,
            cd2_1=0.0,
            cd2_2=p,
        )

    @property
    def bri(self) -> str:
        """The three-character directory prefix of the brick's outputs."""
        return self.brickname[:3]

    @classmethod
    def for_brick(
        cls,
        brickname: str,
        *,
        width: int = BRICK_SIZE_PIX,
        height: int = BRICK_SIZE_PIX,
        pixscale: float = BRICK_PIXSCALE,
        zoom: tuple[int, int, int, int] | None = None,
    ) -> BrickGeometry:
        """The geometry of a brick of the grid (raises ``BrickNameError`` for unknown names).

        ``zoom`` = ``(x0, x1, y0, y1)``: only brick pixels ``[x0:x1, y0:y1]`` (0-based) of the
        ``width`` × ``height`` grid, as runbrick's ``--zoom``.
        """
        b = brick_by_name(brickname)
        width, height, crpix = _zoomed(width, height, zoom)
        return cls(
            brickname=b.brickname,
            brickid=b.brickid,
            ra=b.ra,
            dec=b.dec,
            ra1=b.ra1,
            ra2=b.ra2,
            dec1=b.dec1,
            dec2=b.dec2,
            width=int(width),
            height=int(height),
            pixscale=float(pixscale),
            crpix=crpix,
        )

    @classmethod
    def for_target(
        cls,
        ra: float,
        dec: float,
        *,
        width: int = BRICK_SIZE_PIX,
        height: int = BRICK_SIZE_PIX,
        pixscale: float = BRICK_PIXSCALE,
        zoom: tuple[int, int, int, int] | None = None,
    ) -> BrickGeometry:
        """The geometry of a ``--radec`` target (legacypipe's ``BrickDuck`` and ``get_brick``).

        Named ``custom_brickname(ra, dec)``, brickid −1, the grid centred on (ra, dec) as a
        brick's; the unique area runs from the RA of pixel (W, H/2) to that of (1, H/2) and
        from the Dec of (W/2, 1) to that of (W/2, H), on the (zoomed) grid, 1-based as
        legacypipe's ``pixelxy2radec``.  Raises ``RegionError`` (a ``UsageError``) off the sky.
        """
        r, d = checked_target(ra, dec)
        width, height, crpix = _zoomed(width, height, zoom)
        grid = cls(
            brickname=custom_brickname(r, d),
            brickid=-1,
            ra=r,
            dec=d,
            ra1=r,
            ra2=r,
            dec1=d,
            dec2=d,
            width=int(width),
            height=int(height),
            pixscale=float(pixscale),
            crpix=crpix,
            custom=True,
        )
        wcs = grid.wcs()
        ras, _ = wcs.pixel_to_radec([width, 1.0], [height / 2.0, height / 2.0])
        _, decs = wcs.pixel_to_radec([width / 2.0, width / 2.0], [1.0, height])
        return replace(
            grid,
            ra1=float(ras[0]),
            ra2=float(ras[1]),
            dec1=float(decs[0]),
            dec2=float(decs[1]),
        )


def _zoomed(
    width: int, height: int, zoom: tuple[int, int, int, int] | None
) -> tuple[int, int, tuple[float, float] | None]:
    """Width, height and CRPIX of a W × H grid cut to ``--zoom`` (None: the whole grid)."""
    if zoom is None:
        return width, height, None
    x0, x1, y0, y1 = (int(v) for v in zoom)
    return x1 - x0, y1 - y0, (width / 2.0 + 0.5 - x0, height / 2.0 + 0.5 - y0)


@dataclass
class Tim:
    """One CCD's calibrated pixels overlapping the brick (legacypipe's "tractor image").

    ``image`` is sky-subtracted and in nanomaggies per pixel (zeropoint ``ccdzpt + 2.5 log10
    exptime``); ``invvar`` is 1/nanomaggies², zero where the DQ plane flags a pixel. Cut-out
    pixel (i, j), 0-based, is CCD pixel (x0 + i + 1, y0 + j + 1) of ``wcs`` (1-based, FITS).
    """

    name: str
    camera: str
    expnum: int
    ccdname: str
    band: str
    mjd_obs: float
    image: npt.NDArray[np.float32]
    invvar: npt.NDArray[np.float32]
    dq: npt.NDArray[np.int16]
    x0: int
    y0: int
    wcs: TanWcs
    psf: PsfModel
    psf_fwhm: float
    sig1: float
    psfnorm: float
    galnorm: float
    exptime: float = 0.0
    zpt: float = 0.0
    """Zeropoint of the CCD for 1-second counts (survey-ccds ``ccdzpt``)."""
    zpt_error: float = 0.0
    """Relative flux error of that zeropoint (``ccdphrms/√ccdnphotom`` in flux units)."""
    image_filename: str = ""
    ccd_row: int = -1
    """Index of the CCD's row in the survey-ccds table the tims were selected from."""

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the cut-out."""
        return int(self.image.shape[0]), int(self.image.shape[1])


@dataclass
class Source:
    """One catalogue source during detection and fitting; fluxes are nanomaggies per band."""

    ra: float
    dec: float
    type: str
    """"PSF" | "REX" | "EXP" | "DEV" | "SER" | "DUP"."""
    flux: dict[str, float] = field(default_factory=dict)
    flux_ivar: dict[str, float] = field(default_factory=dict)
    shape_r: float = 0.0
    """Half-light radius, arcsec (REX/EXP/DEV/SER)."""
    shape_r_ivar: float = 0.0
    shape_e1: float = 0.0
    shape_e2: float = 0.0
    shape_e1_ivar: float = 0.0
    shape_e2_ivar: float = 0.0
    sersic: float = 0.0
    ra_ivar: float = 0.0
    dec_ivar: float = 0.0
    bx: float = 0.0
    by: float = 0.0
    """0-based brick-grid pixel position."""
    ref_cat: str = ""
    ref_id: int = -1
    blob: int = -1
    dchisq: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)
    """χ² improvements of PSF, REX, DEV, EXP, SER over no source."""
    rchisq: dict[str, float] = field(default_factory=dict)
    fracflux: dict[str, float] = field(default_factory=dict)
    fracmasked: dict[str, float] = field(default_factory=dict)
    fracin: dict[str, float] = field(default_factory=dict)
    nobs: dict[str, int] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)
    """Anything else a stage wants to carry (kept out of the typed fields on purpose)."""
