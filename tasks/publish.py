"""The ``publish`` phase's unit: rsync the release to its destination.

A planner (settings and options → units with their input files, so a changed input reprocesses
exactly its units) and a unit function (module level, so Dask pickles it by reference) that
returns the files it wrote. Publishing is lsdr's own, whatever the engine.
"""

from __future__ import annotations

from pathlib import Path

from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.engines.base import result_summary
from lsdr.tasks.unit import Unit, UnitOutput


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
    from lsdr.survey.posttractor.publish import publish

    result = publish(layout, str(unit.option("destination")), dry_run=False)
    return UnitOutput((), result_summary(result))
