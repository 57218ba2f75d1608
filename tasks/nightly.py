"""The nightly increment's bookkeeping: which CP images arrived, what they touch, how they ended.

"Arrived" is by the ledger's record of the images already seen (``nightly_images``), not by a
time: an image arrived when its path is not recorded as settled, or its file's stamp (size,
mtime) is not the one recorded (``docs/nightly.md``).  A copy that keeps its mtime, or a clock
running behind on the machine that wrote it, is still found, which a time watermark would miss.
No Prefect here: the flow (``flows/nightly.py``) calls these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lsdr.infra.ledger import SeenImage
from lsdr.survey.core import bricks as grid
from lsdr.survey.core.layout import ReleaseLayout

NEW = "new"
CHANGED = "changed"
PENDING = "failed before"
"""Why an image counts as arrived: never seen, replaced since, or its units failed last time."""


@dataclass(frozen=True)
class Arrival:
    """An image the increment must process: its path under ``images/``, stamp and why."""

    image: str
    size: int
    mtime_ns: int
    why: str


def cp_images(layout: ReleaseLayout) -> dict[str, tuple[int, int]]:
    """Every CP science image of the release with its stamp (size, mtime in ns).

    A directory walk and one ``stat`` per image: the whole cost of a night without new images.
    """
    from lsdr.survey.pretractor.footprints import find_cp_images

    root = layout.images_dir
    if not root.is_dir():
        return {}
    out: dict[str, tuple[int, int]] = {}
    for path in find_cp_images(root):
        st = path.stat()
        out[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


def arrivals(
    current: Mapping[str, tuple[int, int]], seen: Mapping[str, SeenImage]
) -> list[Arrival]:
    """The images to process: not seen, seen with another stamp, or seen failing (by path)."""
    out: list[Arrival] = []
    for image, (size, mtime_ns) in sorted(current.items()):
        known = seen.get(image)
        if known is None:
            why: str | None = NEW
        elif not known.settled:
            why = PENDING
        elif (known.size, known.mtime_ns) != (size, mtime_ns):
            why = CHANGED
        else:
            why = None
        if why is not None:
            out.append(Arrival(image, size, mtime_ns, why))
    return out


def seen_by_the_release(
    layout: ReleaseLayout, unit_states: Mapping[tuple[str, str], str]
) -> list[SeenImage]:
    """The images the release settled before the first increment (increment 0).

    Those the last discovery read (its sidecar's inputs, with the stamps it read them at):
    listed images whose zeropoints and merged calibs are done, and images discovery dropped
    (an older processing, outside the dates).  Listed images whose units failed are recorded
    as failed, so the first increment tries them again; images discovery has not read are not
    recorded at all: they arrived after it.
    """
    from lsdr.survey.pretractor.discover import read_image_list
    from lsdr.tasks.sidecars import read_sidecar, sidecar_path

    doc = read_sidecar(sidecar_path(layout, "discover", "images"))
    if doc is None or doc.get("state") != "done" or not layout.image_list.exists():
        return []
    listed = set(read_image_list(layout))
    dropped = {str(d[0]): str(d[1]) for d in doc.get("summary", {}).get("dropped", [])}
    prefix = "images/"
    out: list[SeenImage] = []
    for item in doc.get("inputs", []):
        path = str(item[0])
        image = path.removeprefix(prefix)
        if not path.startswith(prefix) or not _is_science(image):
            continue
        size, mtime_ns = int(item[2]), int(item[3])
        if image in listed:
            state, reason = image_state(image, unit_states)
        else:
            state, reason = "dropped", dropped.get(image, "not in the image list")
        out.append(SeenImage(image, state, size, mtime_ns, 0, reason))
    return out


def _is_science(relpath: str) -> bool:
    """Whether a CP file name is a science image (``ooi``/``oki``), not a companion."""
    from fnmatch import fnmatch

    from lsdr.survey.pretractor.footprints import CP_IMAGE_PATTERNS

    name = relpath.rsplit("/", 1)[-1]
    return any(fnmatch(name, pattern) for pattern in CP_IMAGE_PATTERNS)


def image_state(image: str, unit_states: Mapping[tuple[str, str], str]) -> tuple[str, str | None]:
    """``done`` when the image's zeropoints and merged calibs are, else ``failed`` and why."""
    for phase in ("zeropoints", "merge-calibs"):
        state = unit_states.get((phase, image))
        if state != "done":
            return "failed", f"{phase} {state or 'not run'}"
    return "done", None


@dataclass
class Settlement:
    """How the arrived images ended, for the ledger and the summary."""

    images: list[SeenImage] = field(default_factory=list)
    touched: dict[str, list[str]] = field(default_factory=dict)
    """Per image done: the bricks of the release's list its kept CCDs touch."""

    def in_state(self, state: str) -> list[SeenImage]:
        """The images that ended in one state."""
        return [i for i in self.images if i.state == state]


def settle_arrivals(
    arrived: Sequence[Arrival],
    increment: int,
    listed: Iterable[str],
    dropped: Mapping[str, str],
    unit_states: Mapping[tuple[str, str], str],
    touched: Mapping[str, list[str]],
) -> Settlement:
    """Each arrived image's end: done, outside (done, touching no brick), dropped or failed.

    A dropped image is settled only when discovery dropped it for good (an older processing,
    outside the dates); one dropped for a missing ``ood``/``oow`` (a transfer still under way)
    stays pending, as does one whose units failed.
    """
    on_list = set(listed)
    out = Settlement()
    for a in arrived:
        reason: str | None
        if a.image not in on_list:
            reason = dropped.get(a.image, "not in the image list")
            state = "failed" if "missing" in reason else "dropped"
        else:
            state, reason = image_state(a.image, unit_states)
            if state == "done":
                out.touched[a.image] = list(touched.get(a.image, []))
                if not out.touched[a.image]:
                    state, reason = "outside", "its CCDs touch no brick of the release's list"
        out.images.append(SeenImage(a.image, state, a.size, a.mtime_ns, increment, reason))
    return out


def bricks_touched_by_ccds(
    layout: ReleaseLayout,
    images: Iterable[str],
    bricks: Iterable[str],
    width: int = grid.BRICK_SIZE_PIX,
    pixscale: float = grid.BRICK_PIXSCALE,
) -> dict[str, list[str]]:
    """Per image: the listed bricks its CCDs that pass the cuts touch (the survey-ccds rows).

    The footprint test of runbrick's CCD selection: each CCD's pixel-edge corners against the
    brick's image of ``width`` pixels of ``pixscale`` arcsec.
    """
    from lsdr.survey.pretractor.bricklist import ccd_footprints
    from lsdr.survey.pretractor.ccdtables import read_survey_ccds

    wanted = set(images)
    out: dict[str, list[str]] = {i: [] for i in sorted(wanted)}
    if not wanted or not layout.survey_ccds_tables():
        return out
    ccds = read_survey_ccds(layout, kept_only=True)
    names = np.array([_text(n) for n in ccds["image_filename"]])
    rows = ccds[np.isin(names, sorted(wanted))]
    if len(rows) == 0:
        return out
    _, _, corner_ra, corner_dec = ccd_footprints(rows)
    found = [_text(n) for n in rows["image_filename"]]
    return out | _by_image(found, corner_ra, corner_dec, bricks, width, pixscale)


def bricks_touched_by_headers(
    layout: ReleaseLayout,
    images: Iterable[str],
    bricks: Iterable[str],
    width: int = grid.BRICK_SIZE_PIX,
    pixscale: float = grid.BRICK_PIXSCALE,
) -> dict[str, list[str]]:
    """Per image: the listed bricks its CCDs' footprints touch, from its headers (no cuts).

    What a dry run can know before the zeropoints: an upper bound of the bricks redone.
    """
    from lsdr.survey.pretractor.footprints import footprints_of_images

    paths = [layout.images_dir / i for i in sorted(set(images))]
    found = footprints_of_images(paths, layout.images_dir)
    touched = _by_image(
        found.image_filename, found.corner_ra, found.corner_dec, bricks, width, pixscale
    )
    return {p.relative_to(layout.images_dir).as_posix(): [] for p in paths} | touched


def _by_image(
    names: Sequence[str],
    corner_ra: np.ndarray,
    corner_dec: np.ndarray,
    bricks: Iterable[str],
    width: int,
    pixscale: float,
) -> dict[str, list[str]]:
    """Per image name: the bricks of ``bricks`` one of its CCD footprints touches."""
    listed = {grid.brick_by_name(b).brickid: b for b in bricks}
    out: dict[str, set[str]] = {n: set() for n in names}
    if len(names):
        index, ids = grid.bricks_touching_polygons(
            corner_ra, corner_dec, width_pix=width, pixscale=pixscale
        )
        for i, brickid in zip(index.tolist(), ids.tolist(), strict=True):
            if brickid in listed:
                out[names[i]].add(listed[brickid])
    return {n: sorted(v) for n, v in out.items()}


def _text(value: object) -> str:
    """A FITS string cell as text."""
    return (value.decode() if isinstance(value, bytes) else str(value)).strip()


def units_started(
    before: Mapping[tuple[str, str], int], after: Mapping[tuple[str, str], int]
) -> dict[str, list[str]]:
    """Per phase, the units started between two ledger readings (their attempts grew)."""
    out: dict[str, list[str]] = {}
    for (phase, key), n in sorted(after.items()):
        if n > before.get((phase, key), 0):
            out.setdefault(phase, []).append(key)
    return out


def sweep_units(layout: ReleaseLayout, bricks: Iterable[str], version: str) -> list[str]:
    """The sweep units (file stems, the sweeps phase's keys) of the boxes the bricks fall in."""
    from lsdr.survey.posttractor.sweeps import sweep_boxes

    return sorted(
        layout.sweep(version, b.ra1, b.dec1, b.ra2, b.dec2).stem
        for b in sweep_boxes(layout, sorted(set(bricks)))
    )


def summary_path(layout: ReleaseLayout) -> Path:
    """Where the last increment's summary is written in the release."""
    return layout.nightly_summary
