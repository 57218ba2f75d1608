"""Phase ``package``: verify the bricks' checksums, checksum the release, tar the logs."""

from __future__ import annotations

from typing import Any

from prefect import flow

from lsdr.flows.planning import release_bricks
from lsdr.flows.report import PackageResult, combined_summary
from lsdr.flows.runner import run_units
from lsdr.flows.settings import settings_for
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import PackageOptions
from lsdr.tasks.package import (
    checksums_unit,
    logs_unit,
    plan_checksums,
    plan_logs,
    plan_verify,
    verify_unit,
)


@flow(name="package")
def package(
    release_dir: str,
    options: PackageOptions | None = None,
    settings: dict[str, Any] | None = None,
) -> PackageResult:
    """Verify each brick's checksums, then write the release checksums and log tarballs.

    A brick whose files do not match its checksum file fails (science) and is left out of the
    release's checksum files; the others go on.
    """
    o = options or PackageOptions()
    s = settings_for(release_dir, settings)
    layout = ReleaseLayout(s.release_dir)
    names, left_out = release_bricks(s, o.bricks, "package")
    verified = run_units("verify", verify_unit, plan_verify(layout, names), s, force=o.force)
    good = [r.key for r in verified.results if r.state != "failed"]
    reports = [verified]
    # The log tarballs first: the release checksum files list them.
    reports.append(run_units("logs", logs_unit, plan_logs(layout, names), s))
    reports.append(run_units("checksums", checksums_unit, plan_checksums(layout, good), s))
    return combined_summary(
        "package",
        reports,
        result=PackageResult,
        left_out=left_out,
        left_out_what="brick",
        verified=len(good),
    )
