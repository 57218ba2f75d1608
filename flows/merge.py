"""Phase ``merge``: calibs per exposure, and the survey-ccds / ccds-annotated tables with cuts."""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow

from lsdr.flows.runner import phase_summary, run_units, settings_for
from lsdr.flows.zeropoints import read_images
from lsdr.survey.layout import ReleaseLayout
from lsdr.tasks.pretractor import (
    merge_calibs_unit,
    merge_tables_unit,
    plan_merge_calibs,
    plan_merge_tables,
)

log = logging.getLogger("lsdr.flows")


@flow(name="merge")
def merge(
    release_dir: str,
    cut: bool = True,
    cut_expnum: bool = True,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge calibs (``merge-calibs --continue``) and CCD tables (``--cut --cut-expnum``)."""
    s = settings_for(release_dir, settings)
    layout = ReleaseLayout(s.release_dir)
    images = read_images(layout)
    with_zpt = [i for i in images if layout.zpt_annotated(i).exists()]
    calibs = run_units("merge-calibs", merge_calibs_unit, plan_merge_calibs(layout, with_zpt), s)
    units = plan_merge_tables(layout, images, cut=cut, cut_expnum=cut_expnum)
    tables = run_units("merge", merge_tables_unit, units, s)
    summary = tables.results[0].summary if tables.ok else {}
    for missing in summary.get("missing_tables", []):
        log.warning("merge: no zeropoint table %s (its image failed or was not measured)", missing)
    result = phase_summary(tables, **summary)
    result["merge_calibs"] = phase_summary(calibs)
    result["failed"] = result["failed"] + result["merge_calibs"]["failed"]
    return result
