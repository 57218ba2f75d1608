"""The ``package`` phase's units: ``verify`` per brick, ``logs`` per directory, ``checksums``.

A planner (settings and options → units with their input files, so a changed input reprocesses
exactly its units) and a unit function (module level, so Dask pickles it by reference) that
returns the files it wrote. They package the release: lsdr's own, whatever the engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from lsdr.survey.core.layout import ReleaseLayout, brick_dir_prefix
from lsdr.tasks.unit import Unit, UnitOutput


def _existing(paths: Iterable[Path]) -> tuple[str, ...]:
    return tuple(str(p) for p in paths if p.exists())


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
    from lsdr.survey.core.errors import InputFileError
    from lsdr.survey.posttractor.checksums import read_checksum_file

    try:
        listed = read_checksum_file(layout.brick_checksums(brick), layout.root)
    except InputFileError:
        return ()
    return tuple(str(layout.root / rel) for rel in listed)


def verify_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Check a brick's files against its checksum file; a mismatch is a science failure."""
    from lsdr.survey.core.errors import SurveyError
    from lsdr.survey.posttractor.checksums import verify_brick_checksums

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
    from lsdr.survey.posttractor.checksums import other_directories, published_files

    return [p for d in other_directories(layout) for p in published_files(layout, d)]


def checksums_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """Repackage the brick checksums per directory and checksum everything else."""
    from lsdr.survey.posttractor.checksums import checksum_other, repackage_checksums

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
    from lsdr.survey.posttractor.logtars import tar_logs

    path = tar_logs(layout, unit.key)
    return UnitOutput((path,), {"logs": len(unit.inputs)})
