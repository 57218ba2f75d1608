"""The cameras of the Legacy Surveys, as far as lsdr needs to know them.

Facts a release depends on: the CP file-name prefix (``ksb_``, ``k4m_``, ``c4d_``), the header
conventions legacypipe reads (how the band, the exposure number and the gain are found), the
nominal pixel scale and the CCD mosaic.  Values used only by the synthetic survey (nominal
zeropoints, sky brightness, seeing, read noise, full well) are typical of each camera, chosen to
give realistic depths; they are not measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

from lsdr.survey.core.errors import CameraError


@dataclass(frozen=True, slots=True)
class CcdGeometry:
    """One CCD of a camera: its name and its centre, in native pixels from the boresight."""

    name: str
    x_offset: float
    y_offset: float


@dataclass(frozen=True, slots=True)
class BandFacts:
    """Per-band facts of a camera (nominal values used by the simulator and as cut defaults)."""

    band: str
    filter_header: str
    """The primary header's FILTER value (legacypipe takes the first word, mapping e.g. ``zd``)."""
    filename_filter: str
    """The filter as it appears in CP file names (``g``, ``r``, ``zd``)."""
    zpt0: float
    """Nominal zeropoint: AB magnitude of a source giving 1 electron/s (legacypipe's ``zpt0``)."""
    sky_mag: float
    """Dark-sky brightness, AB mag/arcsec²."""
    k_ext: float
    """Atmospheric extinction coefficient, mag/airmass."""
    seeing: float
    """Median seeing FWHM, arcsec."""
    exptime: float
    """Typical exposure time, s."""


@dataclass(frozen=True, slots=True)
class Camera:
    """A camera: CP conventions, CCD mosaic and nominal performance."""

    name: str
    """legacypipe's camera name (``90prime``, ``mosaic``, ``decam``)."""
    prefix: str
    """CP file-name prefix (``ksb``, ``k4m``, ``c4d``)."""
    instrument: str
    """The INSTRUME header value."""
    telescope: str
    plver: str
    """CP pipeline version written by the simulator (the directory ``CP/<plver>/``)."""
    pixscale: float
    """Nominal pixel scale, arcsec/pixel."""
    ccd_width: int
    ccd_height: int
    ccds: tuple[CcdGeometry, ...]
    bands: tuple[BandFacts, ...]
    read_noise: float
    """Electrons per pixel."""
    gain: float
    """Electrons per ADU."""
    full_well: float
    """Electrons at which a pixel saturates."""
    moffat_beta: float
    """Moffat β of the simulated PSF."""
    expnum_in_header: bool
    """True when the primary header has EXPNUM; 90Prime derives it from DTACQNAM instead."""

    def band(self, band: str) -> BandFacts:
        """The facts of one of the camera's bands."""
        for facts in self.bands:
            if facts.band == band:
                return facts
        known = ", ".join(b.band for b in self.bands)
        raise CameraError(f"camera {self.name} has no band {band!r} (it has {known})")

    @property
    def band_names(self) -> tuple[str, ...]:
        """The camera's bands, e.g. ``('g', 'r')``."""
        return tuple(b.band for b in self.bands)


def _quad(width: int, height: int, gap: int, names: tuple[str, ...]) -> tuple[CcdGeometry, ...]:
    """A 2×2 mosaic of CCDs with ``gap`` pixels between them (order: NW, NE, SW, SE)."""
    dx = (width + gap) / 2
    dy = (height + gap) / 2
    spots = ((-dx, dy), (dx, dy), (-dx, -dy), (dx, -dy))
    return tuple(CcdGeometry(n, x, y) for n, (x, y) in zip(names, spots, strict=True))


NINETY_PRIME = Camera(
    name="90prime",
    prefix="ksb",
    instrument="90prime",
    telescope="Steward 2.3 m (bok)",
    plver="V2.3",
    pixscale=0.454,
    ccd_width=4032,
    ccd_height=4096,
    ccds=_quad(4032, 4096, 160, ("CCD1", "CCD2", "CCD3", "CCD4")),
    bands=(
        BandFacts("g", "g", "g", 25.74, 22.0, 0.17, 1.7, 100.0),
        BandFacts("r", "bokr", "r", 25.52, 21.0, 0.10, 1.6, 100.0),
    ),
    read_noise=8.0,
    gain=1.4,
    full_well=73000.0,
    moffat_beta=3.5,
    expnum_in_header=False,
)

MOSAIC = Camera(
    name="mosaic",
    prefix="k4m",
    instrument="Mosaic3",
    telescope="KPNO 4.0 meter telescope",
    plver="V4.3",
    pixscale=0.262,
    ccd_width=4096,
    ccd_height=4096,
    ccds=_quad(4096, 4096, 100, ("CCD1", "CCD2", "CCD3", "CCD4")),
    bands=(BandFacts("z", "zd DECam k1038", "zd", 26.20, 19.0, 0.06, 1.1, 80.0),),
    read_noise=4.1,
    gain=1.91,
    full_well=90000.0,
    moffat_beta=3.5,
    expnum_in_header=True,
)

DECAM = Camera(
    name="decam",
    prefix="c4d",
    instrument="DECam",
    telescope="CTIO 4.0-m telescope",
    plver="V4.8.2a",
    pixscale=0.262,
    ccd_width=2046,
    ccd_height=4094,
    ccds=(
        CcdGeometry("S4", -1060.0, -2150.0),
        CcdGeometry("S5", 1060.0, -2150.0),
        CcdGeometry("N4", -1060.0, 2150.0),
        CcdGeometry("N5", 1060.0, 2150.0),
        CcdGeometry("S10", 0.0, -6450.0),
        CcdGeometry("N10", 0.0, 6450.0),
    ),
    bands=(
        BandFacts("g", "g DECam SDSS c0001 4720.0 1520.0", "g", 25.08, 22.0, 0.17, 1.3, 90.0),
        BandFacts("r", "r DECam SDSS c0002 6415.0 1480.0", "r", 25.29, 21.0, 0.10, 1.2, 90.0),
        BandFacts("z", "z DECam SDSS c0004 9260.0 1520.0", "z", 24.92, 19.0, 0.06, 1.1, 90.0),
    ),
    read_noise=7.0,
    gain=4.0,
    full_well=130000.0,
    moffat_beta=3.5,
    expnum_in_header=True,
)

CAMERAS: dict[str, Camera] = {c.name: c for c in (NINETY_PRIME, MOSAIC, DECAM)}

DEFAULT_BANDS = ("g", "r", "z")
"""The bands a release fits and summarises unless told otherwise (runbrick's ``--bands``)."""
"""Cameras by legacypipe name."""


def get_camera(name: str) -> Camera:
    """The camera called ``name`` (legacypipe's spelling); a clear error lists the known ones."""
    try:
        return CAMERAS[name.lower()]
    except KeyError:
        known = ", ".join(CAMERAS)
        raise CameraError(f"unknown camera {name!r}: lsdr knows {known}") from None


def camera_of_image(filename: str) -> Camera:
    """The camera that wrote a CP image, from its file-name prefix (``ksb_…`` → 90prime)."""
    base = filename.rsplit("/", 1)[-1]
    for camera in CAMERAS.values():
        if base.startswith(camera.prefix + "_"):
            return camera
    raise CameraError(f"{filename}: not a CP image name of a known camera (ksb_, k4m_, c4d_)")
