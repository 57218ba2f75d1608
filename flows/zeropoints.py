"""Phase ``zeropoints``: per image, spline sky, PSF and zeropoint of every CCD (lite engine)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from lsdr.flows.planning import read_planned_list
from lsdr.flows.report import PhaseResult, phase_summary
from lsdr.flows.runner import run_units
from lsdr.flows.settings import settings_for
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import ZeropointsOptions
from lsdr.tasks.zeropoints import plan_zeropoints, zeropoints_unit


@flow(name="zeropoints")
def zeropoints(
    release_dir: str,
    options: ZeropointsOptions | None = None,
    settings: dict[str, Any] | None = None,
) -> PhaseResult:
    """``<base>-annotated.fits``, ``<base>-photom.fits`` and per-CCD calibs for each image.

    An image list that cannot be read is one failed unit (keyed by its file name), not a crash.
    """
    o = options or ZeropointsOptions()
    s = settings_for(release_dir, settings)
    layout = ReleaseLayout(s.release_dir)
    images, bad_list = read_planned_list(
        "zeropoints", layout.image_list, lambda: read_images(layout), s
    )
    units = plan_zeropoints(layout, images, run_calibs=o.run_calibs, threads=s.unit_threads)
    report = run_units("zeropoints", zeropoints_unit, [*bad_list, *units], s)
    return phase_summary(report)


def read_images(layout: ReleaseLayout) -> list[str]:
    """The discovered image list (run ``discover`` first)."""
    from lsdr.survey.pretractor.discover import read_image_list

    return read_image_list(layout)
