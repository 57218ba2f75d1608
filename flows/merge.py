"""Phase ``merge``: calibs per exposure, and the survey-ccds / ccds-annotated tables with cuts.

Images whose zeropoints unit failed are left out of both steps (even when an older zeropoint
table of theirs is still there), and images whose merged calibs failed are left out of the
tables: one bad image costs its own CCDs, never the phase.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow

from lsdr.flows.planning import leave_out, read_planned_list, upstream_failures
from lsdr.flows.report import MergeResult, PhaseReport, PhaseResult, phase_summary
from lsdr.flows.runner import run_units
from lsdr.flows.settings import settings_for
from lsdr.flows.zeropoints import read_images
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import MergeOptions
from lsdr.tasks.merge import (
    merge_calibs_unit,
    merge_tables_unit,
    plan_merge_calibs,
    plan_merge_tables,
)

log = logging.getLogger("lsdr.flows")


@flow(name="merge")
def merge(
    release_dir: str,
    options: MergeOptions | None = None,
    settings: dict[str, Any] | None = None,
) -> MergeResult:
    """Merge calibs (``merge-calibs --continue``) and CCD tables (``--cut --cut-expnum``)."""
    o = options or MergeOptions()
    s = settings_for(release_dir, settings)
    layout = ReleaseLayout(s.release_dir)
    images, bad_list = read_planned_list("merge", layout.image_list, lambda: read_images(layout), s)
    if bad_list:
        tables = run_units("merge", merge_tables_unit, bad_list, s)
        return phase_summary(
            tables, result=MergeResult, merge_calibs=phase_summary(PhaseReport("merge-calibs"))
        )
    failed_zpt = upstream_failures(s, "zeropoints", images)
    usable = [i for i in images if i not in failed_zpt]
    with_zpt = [i for i in usable if layout.zpt_annotated(i).exists()]
    calibs = run_units("merge-calibs", merge_calibs_unit, plan_merge_calibs(layout, with_zpt), s)
    failed_calibs = {r.key: f"merge-calibs failed: {r.message}" for r in calibs.failed}
    failed_calibs.update(upstream_failures(s, "merge-calibs", failed_calibs))  # first messages
    left_out = leave_out("merge", "image", {**failed_zpt, **failed_calibs})
    kept = [i for i in usable if i not in failed_calibs]
    units = plan_merge_tables(layout, kept, cut=o.cut, cut_expnum=o.cut_expnum)
    tables = run_units("merge", merge_tables_unit, units, s)
    summary = tables.results[0].summary if tables.ok else {}
    for missing in summary.get("missing_tables", []):
        log.warning("merge: no zeropoint table %s (its image was not measured)", missing)
    numbers = {k: v for k, v in summary.items() if k in TABLE_NUMBERS}
    result = phase_summary(
        tables, result=MergeResult, left_out=left_out, left_out_what="image", **numbers
    )
    result.merge_calibs = phase_summary(calibs)
    result.failed = [*result.failed, *result.merge_calibs.failed]
    return result


TABLE_NUMBERS = frozenset(MergeResult.model_fields) - {"merge_calibs", *PhaseResult.model_fields}
"""The numbers of the CCD tables' unit that the merge result carries: its own fields."""
