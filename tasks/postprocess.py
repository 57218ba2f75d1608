"""The post-tractor phases' units: planners (what each unit reads) and calls into ``survey/``.

Phases in chain order: ``brightneighbors`` (per brick), ``depth`` (per brick) then
``depth-merge``, ``summary`` (per RA-degree chunk) then ``summary-merge``, ``sweeps`` (per sky
box), ``external`` (per external catalogue), ``verify`` (per brick), ``checksums`` and ``logs``
(per output directory), ``publish``.  Each unit's inputs are the files it reads, so a rerun
finds it done until one of them changes.  The science of bright neighbours, depth, summary,
sweeps and external matches is the unit's engine's (``survey/engines``); verify, checksums,
logs and publish package the release and are lsdr's own, whatever the engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lsdr.survey.engines.base import MatchOptions, result_summary
from lsdr.survey.layout import ReleaseLayout, brick_dir_prefix
from lsdr.tasks.units import Unit, UnitOutput, UnitResult, amend_outputs, unit_engine


def _existing(paths: Iterable[Path]) -> tuple[str, ...]:
    return tuple(str(p) for p in paths if p.exists())


# -- bright neighbours ---------------------------------------------------------------------------
def plan_brightneighbors(layout: ReleaseLayout, bricks: Sequence[str]) -> list[Unit]:
    """One unit per brick; it reads the blob and reference maps of the brick and its neighbours.

    Those metrics files change only when runbrick reruns a brick, unlike the maskbits and the
    catalogue, which this step rewrites itself.  Neighbours: the bricks sharing an edge or a
    corner (``survey.brightneighbors.grid_neighbours``).
    """
    from lsdr.survey.brightneighbors import grid_neighbours

    units = []
    for brick in bricks:
        around = [brick, *grid_neighbours(brick)]
        inputs = tuple(
            str(layout.metrics(b, kind)) for b in around for kind in ("blobs", "reference")
        )
        units.append(Unit("brightneighbors", brick, inputs))
    return units


def brightneighbors_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Update the brick's maskbits from its neighbours' bright stars; keep the tractor unit done."""
    output = unit_engine(unit).bright_neighbours(layout, unit.key)
    amend_outputs(layout, "tractor", unit.key, output.paths)
    return output


# -- depth histogram -----------------------------------------------------------------------------
def plan_depth(layout: ReleaseLayout, bricks: Sequence[str], bands: Sequence[str]) -> list[Unit]:
    """One unit per brick: its PSF and galaxy depth maps and its maskbits (primary pixels)."""
    units = []
    for brick in bricks:
        files = [
            layout.coadd(brick, kind, band) for kind in ("depth", "galdepth") for band in bands
        ]
        files.append(layout.coadd_maskbits(brick))
        units.append(Unit("depth", brick, tuple(str(p) for p in files)))
    return units


def depth_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Histogram one brick's depth maps over its primary pixels."""
    return unit_engine(unit).brick_depth(layout, unit.key)


def plan_depth_merge(layout: ReleaseLayout, partials: Sequence[UnitResult]) -> list[Unit]:
    """One unit: the release's depth histogram from the finished bricks' counts."""
    files = tuple(sorted(o for r in partials for o in r.outputs))
    bricks = sorted(r.key for r in partials)
    return [Unit("depth-merge", "depth-histogram", files, (("bricks", bricks),))]


def depth_merge_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Sum the per-brick counts into ``<dr>-depth.fits`` and its plot."""
    return unit_engine(unit).merge_depth(layout, list(unit.option("bricks", [])))


# -- brick summary -------------------------------------------------------------------------------
def plan_summary(layout: ReleaseLayout, bricks: Sequence[str], bands: Sequence[str]) -> list[Unit]:
    """One unit per RA-degree chunk: its bricks' nexp and depth maps and catalogues."""
    from lsdr.survey.bricksummary import summary_chunks

    units = []
    for key, members in sorted(summary_chunks(bricks).items()):
        files: list[Path] = []
        for brick in members:
            files.append(layout.tractor(brick))
            files.extend(
                layout.coadd(brick, kind, band)
                for kind in ("nexp", "depth", "galdepth")
                for band in bands
            )
        units.append(
            Unit("summary", key, tuple(str(p) for p in files), (("bricks", list(members)),))
        )
    return units


def summary_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """The partial brick summary of one RA-degree chunk."""
    return unit_engine(unit).summarize_chunk(layout, unit.key, list(unit.option("bricks", [])))


def plan_summary_merge(layout: ReleaseLayout, partials: Sequence[UnitResult]) -> list[Unit]:
    """One unit: ``survey-bricks-<dr>.fits.gz`` and the summary plots from the chunks."""
    files = tuple(sorted(o for r in partials for o in r.outputs))
    return [Unit("summary-merge", "survey-bricks", files)]


def summary_merge_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Merge the chunks; draw the sky maps."""
    return unit_engine(unit).merge_summary(layout, [Path(p) for p in unit.inputs])


# -- sweeps --------------------------------------------------------------------------------------
def plan_sweeps(layout: ReleaseLayout, bricks: Sequence[str], version: str) -> list[Unit]:
    """One unit per sweep box: the catalogues of the bricks overlapping it."""
    from lsdr.survey.sweeps import sweep_boxes

    units = []
    for box in sweep_boxes(layout, bricks):
        path = layout.sweep(version, box.ra1, box.dec1, box.ra2, box.dec2)
        inputs = tuple(str(layout.tractor(b)) for b in box.bricks)
        options = (
            ("version", version),
            ("box", [box.ra1, box.dec1, box.ra2, box.dec2]),
            ("bricks", list(box.bricks)),
        )
        units.append(Unit("sweeps", path.stem, inputs, options))
    return units


def sweeps_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Write one sweep file: the box's primary objects, sweep columns."""
    from lsdr.survey.sweeps import SweepBox

    ra1, dec1, ra2, dec2 = unit.option("box")
    box = SweepBox(ra1, dec1, ra2, dec2, tuple(unit.option("bricks", [])))
    return unit_engine(unit).sweep(layout, box, str(unit.option("version")))


# -- external matches ----------------------------------------------------------------------------
def plan_external(
    layout: ReleaseLayout,
    bricks: Sequence[str],
    catalogues: Sequence[Any],
    radius_arcsec: float,
) -> list[Unit]:
    """One unit per external catalogue: the catalogue file and every brick's catalogue."""
    cats = tuple(str(layout.tractor(b)) for b in bricks)
    units = []
    for cat in catalogues:
        options = (
            ("catalogue", _catalogue_doc(cat)),
            ("radius_arcsec", radius_arcsec),
            ("bricks", list(bricks)),
        )
        units.append(Unit("external", cat.name, (str(cat.path), *cats), options))
    return units


def _catalogue_doc(cat: Any) -> dict[str, Any]:
    from dataclasses import asdict

    doc = asdict(cat)
    return {
        k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
        for k, v in doc.items()
    }


def external_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Match one external catalogue to the release's primary objects."""
    from lsdr.survey.external import catalogue_from_dict

    catalogue = catalogue_from_dict(unit.option("catalogue"))
    options = MatchOptions(
        bricks=tuple(unit.option("bricks", [])),
        radius_arcsec=float(unit.option("radius_arcsec", MatchOptions.radius_arcsec)),
    )
    return unit_engine(unit).match_external(layout, catalogue, options)


# -- package -------------------------------------------------------------------------------------
def plan_verify(layout: ReleaseLayout, bricks: Sequence[str]) -> list[Unit]:
    """One unit per brick: its checksum file and the files it lists."""
    units = []
    for brick in bricks:
        listed = _listed_files(layout, brick)
        units.append(Unit("verify", brick, (str(layout.brick_checksums(brick)), *listed)))
    return units


def _listed_files(layout: ReleaseLayout, brick: str) -> tuple[str, ...]:
    """The files a brick's checksum file lists; none when it is missing or malformed.

    The verify unit then fails naming the file, instead of the whole phase failing to plan.
    """
    from lsdr.survey.checksums import read_checksum_file
    from lsdr.survey.errors import InputFileError

    try:
        listed = read_checksum_file(layout.brick_checksums(brick), layout.root)
    except InputFileError:
        return ()
    return tuple(str(layout.root / rel) for rel in listed)


def verify_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Check a brick's files against its checksum file; a mismatch is a science failure."""
    from lsdr.survey.checksums import verify_brick_checksums
    from lsdr.survey.errors import SurveyError

    report = verify_brick_checksums(layout, unit.key)
    if not report.ok:
        raise SurveyError(f"{layout.brick_checksums(unit.key)}: {report.describe()}")
    return UnitOutput((), {"files": report.n_files})


def plan_checksums(layout: ReleaseLayout, bricks: Sequence[str]) -> list[Unit]:
    """One unit: the release's checksum files, from the per-brick ones and every other file."""
    inputs = [str(layout.brick_checksums(b)) for b in bricks]
    inputs += [str(p) for p in _top_level_products(layout)]
    return [Unit("checksums", "release", tuple(inputs), (("bricks", list(bricks)),))]


def _top_level_products(layout: ReleaseLayout) -> list[Path]:
    """The published files outside the per-brick directories (tables, sweeps, calibs, …).

    What ``checksum_other`` hashes (not the checksum files it writes): every file whose
    change must redo the release's checksum files.
    """
    from lsdr.survey.checksums import other_directories, published_files

    return [p for d in other_directories(layout) for p in published_files(layout, d)]


def checksums_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Repackage the brick checksums per directory and checksum everything else."""
    from lsdr.survey.checksums import checksum_other, repackage_checksums

    bricks = list(unit.option("bricks", []))
    paths = [*repackage_checksums(layout, bricks), *checksum_other(layout)]
    return UnitOutput(tuple(paths), {"files": len(paths)})


def plan_logs(layout: ReleaseLayout, bricks: Sequence[str]) -> list[Unit]:
    """One unit per brick directory prefix (``<bri>``): every log file under ``logs/<bri>/``."""
    prefixes = sorted({brick_dir_prefix(b) for b in bricks})
    units = []
    for bri in prefixes:
        d = layout.brick_log_dir(bri)
        logs = sorted(d.rglob("*")) if d.exists() else []
        units.append(Unit("logs", bri, _existing(p for p in logs if p.is_file())))
    return units


def logs_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Tar and gzip one brick directory's logs."""
    from lsdr.survey.logtars import tar_logs

    path = tar_logs(layout, unit.key)
    return UnitOutput((path,), {"logs": len(unit.inputs)})


def release_checksum_files(layout: ReleaseLayout) -> list[Path]:
    """The release's checksum files (one per published directory, ``legacysurvey_<dr>*``)."""
    return sorted(layout.root.rglob(f"legacysurvey_{layout.dr}*.sha256sum"))


def plan_publish(layout: ReleaseLayout, destination: str) -> list[Unit]:
    """One unit: rsync the release to ``destination``; it reads the release's checksum files.

    Every published file is in one of them, so a changed product changes the fingerprint.
    """
    files = release_checksum_files(layout)
    files += layout.log_tarballs()
    options = (("destination", destination),)
    return [Unit("publish", destination, tuple(str(p) for p in files), options)]


def publish_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Copy the release (without images/ links and orchestration state) with rsync.

    Dry runs do not come here: the flow calls ``publish`` directly, so that a dry run is
    never recorded as the release having been published.
    """
    from lsdr.survey.publish import publish

    result = publish(layout, str(unit.option("destination")), dry_run=False)
    return UnitOutput((), result_summary(result))
