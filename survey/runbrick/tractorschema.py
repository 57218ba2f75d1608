"""The Tractor catalogue schema of a data release, as data: columns, dtypes, units, nulls, bits.

One place for what ``tractor/<bri>/tractor-<brick>.fits`` holds, so that the lite runbrick
writes, and every later phase (sweeps, summaries, validation) reads, the same columns in the
same order as legacypipe's ``format_catalog`` (``../shared/research/legacypipe-facts.md``
§6-7).  Per-band quantities are flat scalar columns (``flux_g``, ``flux_r``, …) for the bands
of the release; WISE columns and the W1/W2 light curves are optional.  Flavours:

- ``dr9``: ``maskbits`` int16 (bits 0-13), no ``ngood_<b>``;
- ``dr10``: ``maskbits`` int32 (bits 0-16), ``ngood_<b>``;
- ``dr11``: as dr10 plus ``ls_id_dr11`` (first column) and ``nearest_neighbor``, maskbits
  bits 0-19, SATUR_/ALLMASK_ bits assigned to the run's bands in order (legacypipe HEAD).

Every column has a documented null: the value it holds when nothing measured it (0 for
fluxes and inverse variances, ``""`` for ``type`` and ``ref_cat``, 0 for ``ref_id`` as in
legacypipe's output, 1 for ``mw_transmission_*`` with ``ebv`` 0 when no dust map is
configured, −1 for unused light-curve epochs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.cameras import DEFAULT_BANDS
from lsdr.survey.core.errors import UsageError

FLAVOURS = ("dr9", "dr10", "dr11")
"""Release flavours of the schema (see the module docstring)."""

WISE_BANDS = ("w1", "w2", "w3", "w4")
"""unWISE bands, in catalogue order."""
LC_BANDS = ("w1", "w2")
"""Bands of the time-resolved unWISE light curves."""

APRAD: tuple[float, ...] = (0.5, 0.75, 1.0, 1.5, 2.0, 3.5, 5.0, 7.0)
"""Optical aperture radii (arcsec) of ``apflux_<b>`` (header ``APRAD0..7``)."""
WAPRAD: tuple[float, ...] = (3.0, 5.0, 7.0, 9.0, 11.0)
"""unWISE aperture radii (arcsec) of ``apflux_w*`` (header ``WAPRAD0..4``)."""

DCHISQ_MODELS = ("PSF", "REX", "DEV", "EXP", "SER")
"""The models of the five ``dchisq`` entries, in order (header ``DCHISQ_0..4``)."""
SOURCE_TYPES = ("PSF", "REX", "DEV", "EXP", "SER", "DUP")
"""Values of ``type`` (``DUP``: a Gaia source duplicating a large galaxy)."""

WISE_EPOCHS = {"neo4": 11, "neo6": 15, "neo7": 17, "neo11": 25}
"""Light-curve length N by time-resolved unWISE release (basename of ``--unwise-tr-dir``)."""
DEFAULT_LC_EPOCHS = 17
"""legacypipe's light-curve length when the unWISE release is not recognised (and DR10's)."""

MW_K: dict[str, float] = {
    "u": 3.995,
    "g": 3.214,
    "r": 2.165,
    "i": 1.592,
    "z": 1.211,
    "Y": 1.064,
    "w1": 0.184,
    "w2": 0.113,
    "w3": 0.0241,
    "w4": 0.0091,
}
"""A/E(B−V) per band (DES filters, used for north and south): transmission 10^(−k·ebv/2.5)."""

WISE_VEGA_TO_AB: dict[str, float] = {"w1": 2.699, "w2": 3.339, "w3": 5.174, "w4": 6.620}
"""Δm added to WISE Vega magnitudes to get AB (header ``WISEAB1..4``)."""

NANOMAGGY_ZEROPOINT = 22.5
"""AB magnitude of a flux of 1 nanomaggy."""

# -- bits ----------------------------------------------------------------------------------

_MASKBITS_ALL: list[tuple[str, int, str]] = [
    ("NPRIMARY", 0, "outside the brick's unique area"),
    ("BRIGHT", 1, "near a bright star"),
    ("SATUR_G", 2, "saturated in g"),
    ("SATUR_R", 3, "saturated in r"),
    ("SATUR_Z", 4, "saturated in z"),
    ("ALLMASK_G", 5, "an ALLMASK_G bit is set"),
    ("ALLMASK_R", 6, "an ALLMASK_R bit is set"),
    ("ALLMASK_Z", 7, "an ALLMASK_Z bit is set"),
    ("WISEM1", 8, "WISE W1 masked"),
    ("WISEM2", 9, "WISE W2 masked"),
    ("BAILOUT", 10, "fitting bailed out here"),
    ("MEDIUM", 11, "near a medium-bright star"),
    ("GALAXY", 12, "in a large (SGA) galaxy"),
    ("CLUSTER", 13, "in a star cluster"),
    ("SATUR_I", 14, "saturated in i"),
    ("ALLMASK_I", 15, "an ALLMASK_I bit is set"),
    ("SUB_BLOB", 16, "in a large blob that was split"),
    ("RESOLVED", 17, "in a nearby dwarf galaxy resolved into stars"),
    ("MCLOUDS", 18, "in a Magellanic Cloud"),
    ("WISE_GAIA", 19, "WISE photometry on Gaia sources only"),
]
_MASKBITS_LAST = {"dr9": 13, "dr10": 16, "dr11": 19}

FITBITS: dict[str, int] = {
    "FORCED_POINTSOURCE": 0x1,
    "FIT_BACKGROUND": 0x2,
    "HIT_RADIUS_LIMIT": 0x4,
    "HIT_SERSIC_LIMIT": 0x8,
    "FROZEN": 0x10,
    "BRIGHT": 0x20,
    "MEDIUM": 0x40,
    "GAIA": 0x80,
    "TYCHO2": 0x100,
    "LARGEGALAXY": 0x200,
    "WALKER": 0x400,
    "RUNNER": 0x800,
    "GAIA_POINTSOURCE": 0x1000,
    "ITERATIVE": 0x2000,
}
"""``fitbits``: how each source was fit (same in every flavour)."""
FITBITS_DESCRIPTIONS: dict[str, str] = {
    "FORCED_POINTSOURCE": "forced to be a point source",
    "FIT_BACKGROUND": "local background fit",
    "HIT_RADIUS_LIMIT": "radius hit its limit",
    "HIT_SERSIC_LIMIT": "Sersic index hit its limit",
    "FROZEN": "parameters fixed, not fit",
    "BRIGHT": "bright star",
    "MEDIUM": "medium-bright star",
    "GAIA": "Gaia source",
    "TYCHO2": "Tycho-2 star",
    "LARGEGALAXY": "SGA large galaxy",
    "WALKER": "moved more than 1 arcsec in the fit",
    "RUNNER": "moved more than 2.5 arcsec in the fit",
    "GAIA_POINTSOURCE": "Gaia source fit as a point source",
    "ITERATIVE": "found by iterative detection",
}

DQ_BITS: dict[str, int] = {
    "badpix": 0x1,
    "satur": 0x2,
    "interp": 0x4,
    "cr": 0x10,
    "bleed": 0x40,
    "trans": 0x80,
    "edge": 0x100,
    "edge2": 0x200,
    "outlier": 0x800,
}
"""CP data-quality bits as summarised in ``anymask_<b>`` / ``allmask_<b>``."""

WISEMASK_BITS: dict[str, int] = {
    "BRIGHT": 0x1,
    "SPIKE": 0x2,
    "GHOST": 0x4,
    "LATENT": 0x8,
    "LATENT2": 0x10,
    "HALO": 0x20,
    "SATUR": 0x40,
    "SPIKE2": 0x80,
}
"""unWISE mask bits of ``wisemask_w1`` / ``wisemask_w2``."""


def _check_flavour(flavour: str) -> str:
    if flavour not in FLAVOURS:
        raise UsageError(f"unknown release flavour {flavour!r}; expected one of {FLAVOURS}")
    return flavour


def maskbits(bands: Sequence[str] = DEFAULT_BANDS, release_flavour: str = "dr10") -> dict[str, int]:
    """The ``maskbits`` bit values (name → value) for a run's bands and a release flavour.

    dr9/dr10 keep the released fixed bits when every band has its SATUR_/ALLMASK_ bits there
    (g, r, z; and i in dr10).  Otherwise, and always in dr11, the SATUR_/ALLMASK_ bits are
    handed to the run's bands in order, reusing the old bits first and then new ones above
    the highest bit, as legacypipe's ``update_maskbits_bands`` does (so read ``MB_*``).
    """
    _check_flavour(release_flavour)
    last = _MASKBITS_LAST[release_flavour]
    base = {name: 1 << bit for name, bit, _ in _MASKBITS_ALL if bit <= last}
    upper = [b.upper() for b in bands]
    if release_flavour != "dr11" and all(
        f"SATUR_{b}" in base and f"ALLMASK_{b}" in base for b in upper
    ):
        return base
    satur = sorted(v for k, v in base.items() if k.startswith("SATUR_"))
    allmask = sorted(v for k, v in base.items() if k.startswith("ALLMASK_"))
    out = {k: v for k, v in base.items() if not k.startswith(("SATUR_", "ALLMASK_"))}
    nextbit = max(base.values()) << 1
    for band in upper:
        for prefix, pool in (("SATUR_", satur), ("ALLMASK_", allmask)):
            if pool:
                out[prefix + band] = pool.pop(0)
            else:
                out[prefix + band] = nextbit
                nextbit <<= 1
    return out


def maskbits_descriptions(bits: dict[str, int]) -> dict[str, str]:
    """One-line meanings of the maskbits in ``bits`` (for ``MB_``/``MBIT_`` header comments)."""
    fixed = {name: text for name, _, text in _MASKBITS_ALL}
    out = {}
    for name in bits:
        if name in fixed:
            out[name] = fixed[name]
        elif name.startswith("SATUR_"):
            out[name] = f"saturated in {name[6:]}"
        else:
            out[name] = f"an {name} bit is set"
    return out


# -- columns -------------------------------------------------------------------------------


class Column(NamedTuple):
    """One catalogue column: numpy dtype code, element shape, FITS unit, null value, meaning."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    unit: str
    null: Any
    description: str


NMGY = "nanomaggies"
NMGY_IVAR = "nanomaggies^(-2)"

_GAIA_TAGALONG: list[tuple[str, str, str]] = [
    ("phot_g_mean_mag", "f4", "Gaia G mean magnitude"),
    ("phot_g_mean_flux_over_error", "f4", "Gaia G mean flux S/N"),
    ("phot_g_n_obs", "i2", "Gaia G number of observations"),
    ("phot_bp_mean_mag", "f4", "Gaia BP mean magnitude"),
    ("phot_bp_mean_flux_over_error", "f4", "Gaia BP mean flux S/N"),
    ("phot_bp_n_obs", "i2", "Gaia BP number of observations"),
    ("phot_rp_mean_mag", "f4", "Gaia RP mean magnitude"),
    ("phot_rp_mean_flux_over_error", "f4", "Gaia RP mean flux S/N"),
    ("phot_rp_n_obs", "i2", "Gaia RP number of observations"),
    ("phot_variable_flag", "bool", "Gaia photometric variability flag"),
    ("astrometric_excess_noise", "f4", "Gaia astrometric excess noise"),
    ("astrometric_excess_noise_sig", "f4", "Gaia excess noise significance"),
    ("astrometric_n_obs_al", "i2", "Gaia along-scan observations"),
    ("astrometric_n_good_obs_al", "i2", "Gaia good along-scan observations"),
    ("astrometric_weight_al", "f4", "Gaia mean along-scan weight"),
    ("duplicated_source", "bool", "Gaia duplicated-source flag"),
    ("a_g_val", "f4", "Gaia G-band extinction"),
    ("e_bp_min_rp_val", "f4", "Gaia BP-RP reddening"),
    ("phot_bp_rp_excess_factor", "f4", "Gaia BP/RP excess factor"),
    ("astrometric_sigma5d_max", "f4", "Gaia largest 5-parameter error"),
    ("astrometric_params_solved", "u1", "Gaia solved-parameters code"),
]
_GAIA_MAG_UNITS = {"phot_g_mean_mag", "phot_bp_mean_mag", "phot_rp_mean_mag"}


def tractor_columns(
    bands: Sequence[str] = DEFAULT_BANDS,
    *,
    release_flavour: str = "dr10",
    wise: bool = True,
    lc_epochs: int = DEFAULT_LC_EPOCHS,
) -> list[Column]:
    """The ordered columns of a tractor catalogue for ``bands`` (the release's band set).

    ``wise`` adds the unWISE columns; ``lc_epochs`` > 0 (with ``wise``) adds the W1/W2
    light curves with that many epochs (0: none).  ``mw_transmission_<b>`` exists only for
    bands with a known extinction coefficient (:data:`MW_K`), as in legacypipe.
    """
    flavour = _check_flavour(release_flavour)
    bands = _check_bands(bands)
    if lc_epochs < 0:
        raise UsageError(f"lc_epochs must be >= 0, not {lc_epochs}")
    dr11 = flavour == "dr11"
    cols: list[Column] = []

    def add(
        name: str,
        dtype: str,
        unit: str = "",
        null: Any = 0,
        description: str = "",
        shape: tuple[int, ...] = (),
    ) -> None:
        cols.append(Column(name, dtype, shape, unit, null, description))

    def per_band(
        stem: str,
        dtype: str,
        these: Sequence[str],
        unit: str = "",
        null: Any = 0,
        description: str = "",
        shape: tuple[int, ...] = (),
    ) -> None:
        for b in these:
            add(f"{stem}_{b}", dtype, unit, null, description.format(b=b), shape)

    if dr11:
        add("ls_id_dr11", "i8", "", 0, "unique id: release<<42 | brickid<<22 | objid")
    add("release", "i2", "", 0, "data release number of the processing")
    add("brickid", "i4", "", 0, "brick id in the survey-bricks table")
    add("brickname", "S8", "", "", "brick name RRRr[pm]DDd")
    add("objid", "i4", "", 0, "source number in the brick, 0..N-1")
    add("brick_primary", "bool", "", False, "inside the brick's unique area")
    add("maskbits", "i2" if flavour == "dr9" else "i4", "", 0, "maskbits at the source centre")
    add("fitbits", "i2", "", 0, "how the source was fit (FITBITS)")
    add("type", "S3", "", "", "model type: PSF REX DEV EXP SER DUP")
    add("ra", "f8", "deg", 0.0, "right ascension (J2000)")
    add("dec", "f8", "deg", 0.0, "declination (J2000)")
    add("ra_ivar", "f4", "deg^(-2)", 0.0, "inverse variance of ra (on-sky, cos(dec) included)")
    add("dec_ivar", "f4", "deg^(-2)", 0.0, "inverse variance of dec")
    add("bx", "f4", "", 0.0, "brick x pixel of the source (0-based)")
    add("by", "f4", "", 0.0, "brick y pixel of the source (0-based)")
    add("dchisq", "f4", "", 0.0, "chi2 improvement over no source: PSF REX DEV EXP SER", (5,))
    add("ebv", "f4", "mag", 0.0, "SFD E(B-V); 0 when no dust map is configured")
    add("mjd_min", "f8", "", 0.0, "earliest MJD of the images used")
    add("mjd_max", "f8", "", 0.0, "latest MJD of the images used")
    if dr11:
        add("nearest_neighbor", "f4", "arcsec", 0.0, "distance to the nearest source (<1')")
    add("ref_cat", "S2", "", "", "reference catalogue: T2 Tycho-2, G2/GE Gaia, L3 SGA")
    add("ref_id", "i8", "", 0, "id in the reference catalogue; 0 if none")
    add("pmra", "f4", "mas/yr", 0.0, "reference proper motion in RA")
    add("pmdec", "f4", "mas/yr", 0.0, "reference proper motion in Dec")
    add("parallax", "f4", "mas", 0.0, "reference parallax")
    add("pmra_ivar", "f4", "(mas/yr)^(-2)", 0.0, "inverse variance of pmra")
    add("pmdec_ivar", "f4", "(mas/yr)^(-2)", 0.0, "inverse variance of pmdec")
    add("parallax_ivar", "f4", "mas^(-2)", 0.0, "inverse variance of parallax")
    add("ref_epoch", "f4", "", 0.0, "epoch of the reference position (yr)")
    for stem, dtype, text in _GAIA_TAGALONG:
        null: Any = False if dtype == "bool" else 0
        add(f"gaia_{stem}", dtype, "mag" if stem in _GAIA_MAG_UNITS else "", null, text)

    w = WISE_BANDS if wise else ()
    per_band("flux", "f4", bands, NMGY, 0.0, "model flux in {b}")
    per_band("flux", "f4", w, NMGY, 0.0, "forced flux in {b} (AB)")
    per_band("flux_ivar", "f4", bands, NMGY_IVAR, 0.0, "inverse variance of flux_{b}")
    per_band("flux_ivar", "f4", w, NMGY_IVAR, 0.0, "inverse variance of flux_{b}")
    per_band("fiberflux", "f4", bands, NMGY, 0.0, '{b} flux in a 1.5" fiber, 1" seeing')
    per_band("fibertotflux", "f4", bands, NMGY, 0.0, "{b} fiberflux with all sources")
    nap = (len(APRAD),)
    per_band("apflux", "f4", bands, NMGY, 0.0, "{b} aperture fluxes (APRAD)", nap)
    per_band("apflux_resid", "f4", bands, NMGY, 0.0, "{b} aperture fluxes of the residual", nap)
    per_band("apflux_blobresid", "f4", bands, NMGY, 0.0, "{b} aperture fluxes, blob residual", nap)
    per_band("apflux_ivar", "f4", bands, NMGY_IVAR, 0.0, "inverse variance of apflux_{b}", nap)
    per_band("apflux_masked", "f4", bands, "", 0.0, "{b} masked fraction per aperture", nap)
    nwap = (len(WAPRAD),)
    per_band("apflux", "f4", w, NMGY, 0.0, "{b} aperture fluxes (WAPRAD)", nwap)
    per_band("apflux_resid", "f4", w, NMGY, 0.0, "{b} aperture fluxes of the residual", nwap)
    per_band("apflux_ivar", "f4", w, NMGY_IVAR, 0.0, "inverse variance of apflux_{b}", nwap)
    dust = [b for b in bands if b in MW_K]
    per_band("mw_transmission", "f4", dust, "", 1.0, "Galactic transmission in {b}")
    per_band("mw_transmission", "f4", w, "", 1.0, "Galactic transmission in {b}")

    per_band("nobs", "i2", bands, "", 0, "number of images in {b} at the centre")
    per_band("nobs", "i2", w, "", 0, "number of {b} exposures at the centre")
    per_band("rchisq", "f4", bands, "", 0.0, "profile-weighted reduced chi2 in {b}")
    per_band("rchisq", "f4", w, "", 0.0, "profile-weighted reduced chi2 in {b}")
    per_band("fracflux", "f4", bands, "", 0.0, "{b} flux fraction from other sources")
    per_band("fracflux", "f4", w, "", 0.0, "{b} flux fraction from other sources")
    per_band("fracmasked", "f4", bands, "", 0.0, "profile-weighted masked fraction in {b}")
    per_band("fracin", "f4", bands, "", 0.0, "fraction of the {b} profile inside the images")
    if flavour != "dr9":
        per_band("ngood", "i2", bands, "", 0, "number of unmasked {b} images at the centre")
    per_band("anymask", "i2", bands, "", 0, "OR of the {b} DQ bits at the centre")
    per_band("allmask", "i2", bands, "", 0, "AND of the {b} DQ bits at the centre")
    if wise:
        per_band("wisemask", "u1", LC_BANDS, "", 0, "unWISE mask bits in {b}")
    per_band("psfsize", "f4", bands, "arcsec", 0.0, "weighted PSF FWHM in {b}")
    per_band("psfdepth", "f4", bands, NMGY_IVAR, 0.0, "{b} point-source depth (ivar)")
    per_band("galdepth", "f4", bands, NMGY_IVAR, 0.0, '{b} 0.45" exp galaxy depth (ivar)')
    per_band("nea", "f4", bands, "", 0.0, "{b} noise-equivalent area (pixels)")
    per_band("blob_nea", "f4", bands, "", 0.0, "{b} noise-equivalent area in the blob")
    per_band("psfdepth", "f4", w, NMGY_IVAR, 0.0, "{b} point-source depth (ivar)")
    if wise:
        add("wise_coadd_id", "S8", "", "", "unWISE tile of the forced photometry")
        add("wise_x", "f4", "", 0.0, "x in the unWISE tile (0-based)")
        add("wise_y", "f4", "", 0.0, "y in the unWISE tile (0-based)")
        if lc_epochs:
            n = (lc_epochs,)
            lc = LC_BANDS
            per_band("lc_flux", "f4", lc, NMGY, 0.0, "{b} light-curve fluxes", n)
            per_band("lc_flux_ivar", "f4", lc, NMGY_IVAR, 0.0, "ivar of lc_flux_{b}", n)
            per_band("lc_nobs", "i2", lc, "", 0, "{b} exposures per epoch", n)
            per_band("lc_fracflux", "f4", lc, "", 0.0, "{b} fracflux per epoch", n)
            per_band("lc_rchisq", "f4", lc, "", 0.0, "{b} rchisq per epoch", n)
            per_band("lc_mjd", "f8", lc, "", 0.0, "{b} mean MJD per epoch", n)
            per_band("lc_epoch_index", "i2", lc, "", -1, "{b} epoch index; -1 unused", n)
    add("sersic", "f4", "", 0.0, "Sersic index: 4 DEV, 1 EXP/REX, fit for SER, 0 PSF")
    add("sersic_ivar", "f4", "", 0.0, "inverse variance of sersic")
    add("shape_r", "f4", "arcsec", 0.0, "half-light radius")
    add("shape_r_ivar", "f4", "arcsec^(-2)", 0.0, "inverse variance of shape_r")
    add("shape_e1", "f4", "", 0.0, "ellipticity component 1")
    add("shape_e1_ivar", "f4", "", 0.0, "inverse variance of shape_e1")
    add("shape_e2", "f4", "", 0.0, "ellipticity component 2")
    add("shape_e2_ivar", "f4", "", 0.0, "inverse variance of shape_e2")
    return cols


def _check_bands(bands: Sequence[str]) -> tuple[str, ...]:
    out = tuple(bands)
    if isinstance(bands, str) or not out:
        raise UsageError(f"bands must be a non-empty sequence of band names, not {bands!r}")
    for b in out:
        if not (isinstance(b, str) and b and all(c.isalnum() or c == "_" for c in b)):
            raise UsageError(f"{b!r} is not a band name")
        if b.lower() in WISE_BANDS:
            raise UsageError(f"{b!r} is a WISE band; WISE columns come from wise=True")
    if len(set(out)) != len(out):
        raise UsageError(f"duplicate bands in {out}")
    return out


def column_dtype(col: Column) -> tuple[str, np.dtype[Any], tuple[int, ...]] | tuple[str, Any]:
    """The numpy field description of a column (``(name, dtype)`` or ``(name, dtype, shape)``)."""
    dt = np.dtype("?" if col.dtype == "bool" else col.dtype)
    return (col.name, dt, col.shape) if col.shape else (col.name, dt)


def tractor_dtype(
    bands: Sequence[str] = DEFAULT_BANDS,
    *,
    release_flavour: str = "dr10",
    wise: bool = True,
    lc_epochs: int = DEFAULT_LC_EPOCHS,
) -> np.dtype[np.void]:
    """The numpy record dtype of a tractor catalogue, columns in schema order."""
    cols = tractor_columns(bands, release_flavour=release_flavour, wise=wise, lc_epochs=lc_epochs)
    return np.dtype([column_dtype(c) for c in cols])


def tractor_units(
    bands: Sequence[str] = DEFAULT_BANDS,
    *,
    release_flavour: str = "dr10",
    wise: bool = True,
    lc_epochs: int = DEFAULT_LC_EPOCHS,
) -> dict[str, str]:
    """Column → FITS unit (``TUNITn``), for the columns that have one."""
    cols = tractor_columns(bands, release_flavour=release_flavour, wise=wise, lc_epochs=lc_epochs)
    return {c.name: c.unit for c in cols if c.unit}


def empty_catalog(
    n: int,
    bands: Sequence[str] = DEFAULT_BANDS,
    *,
    release_flavour: str = "dr10",
    wise: bool = True,
    lc_epochs: int = DEFAULT_LC_EPOCHS,
) -> npt.NDArray[np.void]:
    """``n`` rows of the schema, every column holding its documented null value."""
    if n < 0:
        raise UsageError(f"a catalogue cannot have {n} rows")
    cols = tractor_columns(bands, release_flavour=release_flavour, wise=wise, lc_epochs=lc_epochs)
    out = np.zeros(n, dtype=np.dtype([column_dtype(c) for c in cols]))
    for c in cols:
        if c.null not in (0, "", False):
            out[c.name] = c.null
    return out


# -- magnitudes ----------------------------------------------------------------------------


def flux_to_mag(flux: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """AB magnitude of a flux in nanomaggies (22.5 − 2.5 log10 f); NaN where flux ≤ 0."""
    f = np.asarray(flux, dtype=np.float64)
    out = np.full(f.shape, np.nan)
    good = f > 0
    out[good] = NANOMAGGY_ZEROPOINT - 2.5 * np.log10(f[good])
    return out


def depth_to_mag(ivar: npt.ArrayLike, nsigma: float = 5.0) -> npt.NDArray[np.float64]:
    """``nsigma`` depth in AB mag of a flux inverse variance (1/nanomaggy²); NaN where ivar ≤ 0.

    psfdepth/galdepth → mag: −2.5 (log10(5/√ivar) − 9).
    """
    iv = np.asarray(ivar, dtype=np.float64)
    out = np.full(iv.shape, np.nan)
    good = iv > 0
    out[good] = -2.5 * (np.log10(nsigma / np.sqrt(iv[good])) - 9.0)
    return out


def mw_transmission(band: str, ebv: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Galactic transmission 10^(−k·ebv/2.5) in ``band`` (1 where ebv is 0, the null)."""
    if band not in MW_K:
        raise UsageError(f"no extinction coefficient for band {band!r}; known: {list(MW_K)}")
    e = np.asarray(ebv, dtype=np.float64)
    return np.asarray(10.0 ** (-MW_K[band] * e / 2.5), dtype=np.float32)
