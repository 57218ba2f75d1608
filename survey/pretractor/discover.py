"""Image discovery: the CP images of a release, trimmed by date and de-duplicated.

The first phase of a release looks under ``images/<camera>/`` (any depth) for the Community
Pipeline's science images (``c4d_``/``k4m_``/``ksb_`` names with ``_ooi_``, or ``_oki_``, which
legacypipe handles like ``ooi``), reads each primary header and keeps one file per exposure:

* the **observing night** of an image is the header's ``DTCALDAT`` (the NOAO archive's night,
  the date of the ``CPYYYYMMDD`` directory) when present, else the local date at the start of the
  night: ``MJD-OBS`` converted to local mean solar time at the site (longitude/15 h) minus 12 h.
  ``date_min``/``date_max`` select nights inclusively;
* two files of the same camera and exposure number are two processings: the newest is kept —
  the higher ``PLVER`` (compared as version numbers), then the later processing ``DATE``, then
  the higher file-name version tag (``_v2`` over ``_v1``).  ``PLPROCID`` is an identifier, not an
  order, so it does not decide;
* an image without its ``ood`` (data quality) or ``oow`` (weight) companion, or whose primary
  header cannot be read, is dropped with the reason.  A truncated image body is not checked here:
  the zeropoint phase reads the pixels and reports it.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from lsdr.survey.core.cameras import CAMERAS, Camera, get_camera
from lsdr.survey.core.errors import InputFileError, UsageError
from lsdr.survey.core.fileio import read_name_list, write_text_atomic
from lsdr.survey.core.layout import ReleaseLayout, image_relpath

log = logging.getLogger(__name__)

SITE_LONGITUDE = {"90prime": -111.600, "mosaic": -111.600, "decam": -70.815}
"""East longitude (degrees) of each camera's telescope: Kitt Peak (Bok 2.3 m, Mayall) and
Cerro Tololo (Blanco); used to turn MJD-OBS into the local observing night."""

_MJD_EPOCH = dt.datetime(1858, 11, 17)
_IMAGE_KINDS = ("_ooi_", "_oki_")
_SUFFIXES = (".fits.fz", ".fits")


@dataclass(frozen=True)
class DiscoveredImage:
    """One CP science image kept by discovery, with the header facts the later phases need."""

    relpath: str
    """Path relative to ``images/``, e.g. ``90prime/CP/V2.3/CP20160115/ksb_…_ooi_g_v1.fits.fz``."""
    camera: str
    expnum: int
    band: str
    mjd_obs: float
    plver: str
    plprocid: str


@dataclass(frozen=True)
class Discovery:
    """The result of discovery: images kept (sorted by path) and files dropped, with reasons."""

    images: tuple[DiscoveredImage, ...]
    dropped: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class _Candidate:
    image: DiscoveredImage
    night: dt.date
    date: str
    tag: str


def find_camera_images(layout: ReleaseLayout, camera: Camera) -> list[str]:
    """Paths (relative to ``images/``) of a camera's CP images under ``images/<camera>/``."""
    top = layout.images_dir / camera.name
    if not top.is_dir():
        return []
    found: set[str] = set()
    for kind in _IMAGE_KINDS:
        for suffix in _SUFFIXES:
            for path in top.rglob(f"{camera.prefix}_*{kind}*{suffix}"):
                if path.is_file() and path.name.endswith(suffix):
                    found.add(path.relative_to(layout.images_dir).as_posix())
    return sorted(found)


def check_nights(date_min: dt.date | None, date_max: dt.date | None) -> None:
    """Refuse a night range that selects nothing: ``date_min`` after ``date_max``."""
    if date_min is not None and date_max is not None and date_min > date_max:
        raise UsageError(f"date_min {date_min} is after date_max {date_max}")


def discover_images(
    layout: ReleaseLayout,
    *,
    cameras: Sequence[str] | None = None,
    date_min: dt.date | None = None,
    date_max: dt.date | None = None,
) -> Discovery:
    """Find the release's CP images, trim them to the nights asked and keep one per exposure.

    ``cameras`` limits the search to those cameras (default: every camera lsdr knows);
    ``date_min``/``date_max`` are inclusive observing nights (see the module docstring).
    """
    check_nights(date_min, date_max)
    chosen = [get_camera(c) for c in cameras] if cameras is not None else list(CAMERAS.values())
    dropped: list[tuple[str, str]] = []
    candidates: list[_Candidate] = []
    for camera in chosen:
        for rel in find_camera_images(layout, camera):
            reason = _missing_companion(layout, rel)
            if reason is not None:
                dropped.append((rel, reason))
                continue
            try:
                cand = _read_candidate(layout, rel, camera)
            except InputFileError as err:
                dropped.append((rel, str(err)))
                continue
            if (date_min is not None and cand.night < date_min) or (
                date_max is not None and cand.night > date_max
            ):
                lo = date_min.isoformat() if date_min else "…"
                hi = date_max.isoformat() if date_max else "…"
                dropped.append((rel, f"outside dates: night {cand.night} not in {lo}..{hi}"))
                continue
            candidates.append(cand)
    kept = _newest_per_exposure(candidates, dropped)
    for rel, reason in dropped:
        log.info("dropped %s: %s", rel, reason)
    return Discovery(
        images=tuple(sorted((c.image for c in kept), key=lambda i: i.relpath)),
        dropped=tuple(sorted(dropped)),
    )


def write_image_list(layout: ReleaseLayout, discovery: Discovery) -> Path:
    """Write ``layout.image_list`` atomically: one kept image path (relative to images/) a line.

    An unchanged list is left as it is (same mtime), so a rescan that finds the same images
    does not look like new input to anything downstream.
    """
    text = "".join(f"{image.relpath}\n" for image in discovery.images)
    path = layout.image_list
    try:
        if path.read_text() == text:
            return path
    except OSError:
        pass
    return write_text_atomic(path, text)


def read_image_list(layout: ReleaseLayout) -> list[str]:
    """The image paths of ``layout.image_list`` (blank lines and ``#`` comments skipped)."""
    return read_name_list(
        layout.image_list, "image list", lambda t: image_relpath(t).as_posix(), (UsageError,)
    )


# ----------------------------------------------------------------------------------------------


def _missing_companion(layout: ReleaseLayout, rel: str) -> str | None:
    """The reason an image cannot be used for lack of its ood/oow files, or None."""
    missing = [kind for kind in ("ood", "oow") if not layout.image_companion(rel, kind).is_file()]
    if not missing:
        return None
    names = ", ".join(layout.image_companion(rel, k).name for k in missing)
    return f"missing {'/'.join(missing)} companion ({names})"


def _read_candidate(layout: ReleaseLayout, rel: str, camera: Camera) -> _Candidate:
    """Read the primary header of one image into a candidate (InputFileError if unusable)."""
    import fitsio

    path = layout.image(rel)
    try:
        header = fitsio.read_header(str(path), ext=0)
    except (OSError, ValueError) as err:
        raise InputFileError(f"{path}: unreadable primary header ({err})") from err
    try:
        expnum = exposure_number(header, camera)
        band = band_of(header, camera)
        mjd = float(header["MJD-OBS"])
    except (KeyError, ValueError, TypeError) as err:
        raise InputFileError(f"{path}: primary header lacks {err}") from err
    image = DiscoveredImage(
        relpath=rel,
        camera=camera.name,
        expnum=expnum,
        band=band,
        mjd_obs=mjd,
        plver=str(header.get("PLVER", "") or "").strip(),
        plprocid=str(header.get("PLPROCID", "") or "").strip(),
    )
    return _Candidate(
        image=image,
        night=observing_night(header, camera.name, mjd),
        date=str(header.get("DATE", "") or "").strip(),
        tag=_version_tag(rel),
    )


def exposure_number(header: Any, camera: Camera) -> int:
    """The exposure number as legacypipe derives it for this camera.

    DECam and Mosaic have ``EXPNUM``; Mosaic's earliest images have it blank, and legacypipe
    then uses the ``OBSID`` time stamp (``kp4m.20160125T082555`` → 160125082555).  90Prime has
    no ``EXPNUM``: the digits of the ``DTACQNAM`` file name are used
    (``/descache/bass/20160710/d7580.0144.fits`` → 75800144).
    """
    if camera.name == "90prime":
        base = PurePosixPath(str(header["DTACQNAM"]).strip()).name
        base = base.replace(".fits", "").replace(".fz", "")
        digits = re.sub(r"[a-z]+|\.+", "", base)
        if not digits.isdigit():
            raise ValueError(f"'DTACQNAM' {header['DTACQNAM']!r} without an exposure number")
        return int(digits)
    value = header.get("EXPNUM") if "EXPNUM" in header else None
    if value is None or str(value).strip() == "":
        if camera.name != "mosaic":
            raise KeyError("EXPNUM")
        stamp = str(header["OBSID"]).strip().split(".")[1].replace("T", "")
        return int(stamp[2:], 10)
    return int(value)


def band_of(header: Any, camera: Camera) -> str:
    """The band: FILTER's first word, Mosaic's ``zd`` → ``z``, 90Prime's ``bokr`` → ``r``."""
    words = str(header["FILTER"]).split()
    if not words:
        raise ValueError("'FILTER' is empty")
    word = words[0]
    for facts in camera.bands:
        if facts.filename_filter == word or facts.filter_header.split()[0] == word:
            return facts.band
    return {"zd": "z", "bokr": "r"}.get(word, word)


def observing_night(header: Any, camera: str, mjd_obs: float) -> dt.date:
    """The observing night of an image: ``DTCALDAT`` if present, else from MJD-OBS at the site."""
    caldat = str(header.get("DTCALDAT", "") or "").strip() if "DTCALDAT" in header else ""
    if caldat:
        try:
            return dt.date.fromisoformat(caldat[:10])
        except ValueError:
            pass
    return night_of_mjd(mjd_obs, camera)


def night_of_mjd(mjd_obs: float, camera: str) -> dt.date:
    """Local date at the start of the night: MJD in local mean solar time, minus 12 hours."""
    hours = 24.0 * mjd_obs + SITE_LONGITUDE.get(camera, 0.0) / 15.0 - 12.0
    return (_MJD_EPOCH + dt.timedelta(hours=hours)).date()


def _version_tag(rel: str) -> str:
    """The CP file-name version (``v1``, ``v2``, ``ls9``): the last ``_`` word of the name."""
    name = PurePosixPath(rel).name.split(".")[0]
    return name.rsplit("_", 1)[-1]


def version_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key comparing versions numerically (``V4.10`` > ``V4.9``, ``v2`` > ``v1``)."""
    parts = re.findall(r"\d+|[A-Za-z]+", text)
    return tuple((0, int(p)) if p.isdigit() else (1, p.lower()) for p in parts)


def _newest_per_exposure(
    candidates: list[_Candidate], dropped: list[tuple[str, str]]
) -> list[_Candidate]:
    """One candidate per (camera, expnum): the newest processing; the others go to ``dropped``."""
    groups: dict[tuple[str, int], list[_Candidate]] = {}
    for cand in candidates:
        groups.setdefault((cand.image.camera, cand.image.expnum), []).append(cand)
    kept = []
    for group in groups.values():
        group.sort(
            key=lambda c: (version_key(c.image.plver), c.date, version_key(c.tag), c.image.relpath)
        )
        best = group[-1]
        kept.append(best)
        for other in group[:-1]:
            if version_key(other.image.plver) != version_key(best.image.plver):
                why = f"older PLVER {other.image.plver} < {best.image.plver}"
            elif other.date != best.date:
                why = f"older processing DATE {other.date} < {best.date}"
            elif version_key(other.tag) != version_key(best.tag):
                why = f"older file version {other.tag} < {best.tag}"
            else:
                why = "same processing; the last path is kept"
            dropped.append(
                (
                    other.image.relpath,
                    f"duplicate of {best.image.relpath} (expnum {best.image.expnum}, {why})",
                )
            )
    return kept
