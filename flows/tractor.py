"""Phase ``tractor``: the lite runbrick on every brick of the brick list."""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow

from lsdr.flows.planning import leave_out, read_planned_list, upstream_failures
from lsdr.flows.report import TractorResult, phase_summary
from lsdr.flows.runner import run_units
from lsdr.flows.settings import settings_for
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import TractorOptions
from lsdr.tasks.tractor import bail_out_after_timeout, plan_tractor, tractor_unit
from lsdr.tasks.unit import Unit

log = logging.getLogger("lsdr.flows")


@flow(name="tractor")
def tractor(
    release_dir: str,
    options: TractorOptions | None = None,
    settings: dict[str, Any] | None = None,
) -> TractorResult:
    """Catalogues, coadds and maskbits for each brick (default: every brick of bricks.txt).

    The options are :class:`TractorOptions`: past ``fit_budget_s`` seconds of fitting a brick
    saves its checkpoint and is rerun with ``--bail-out`` (its unfit blobs flagged BAILOUT);
    ``outliers`` False skips the cross-exposure outlier masking (legacypipe's
    ``--no-outliers``); ``force`` bricks run even when done.  Each brick is its own Prefect
    task, placed on a worker with room for its memory estimate.
    """
    from lsdr.survey.pretractor.bricklist import read_brick_list

    o = options or TractorOptions()
    s = settings_for(release_dir, settings)
    layout = ReleaseLayout(s.release_dir)
    bad_list: list[Unit] = []
    if o.bricks:
        names = list(o.bricks)
    else:
        names, bad_list = read_planned_list(
            "tractor", layout.brick_list, lambda: read_brick_list(layout), s
        )
    # The CCD tables and the brick list are made by one unit each: when the last run of either
    # failed, what is on disk is older than the survey, and no brick is fitted on it.
    upstream = upstream_failures(s, "merge", ["survey-ccds"])
    if not o.bricks:
        upstream.update(upstream_failures(s, "bricks", ["brick-list"]))
    reason = "; ".join(upstream.values())
    left_out = leave_out("tractor", "brick", dict.fromkeys(names, reason) if upstream else {})
    if upstream:
        names = []
    units = plan_tractor(layout, names, o, threads=s.unit_threads)
    # Largest bricks first (memory follows pixels, and so does time): the last brick to start
    # is a small one, so workers finish together (longest-processing-time-first scheduling).
    units = [*bad_list, *sorted(units, key=lambda u: -u.memory_mb)]
    report = run_units(
        "tractor",
        tractor_unit,
        units,
        s,
        on_timeout=bail_out_after_timeout,
        batch_size=1,
        force=o.force,
    )
    empty = [r.key for r in report.results if r.summary.get("status") == "nothing-to-do"]
    for brick in empty:
        log.warning("tractor: %s has no CCDs: nothing to do, no catalogue", brick)
    return phase_summary(
        report,
        result=TractorResult,
        left_out=left_out,
        left_out_what="brick",
        nothing_to_do=empty,
    )
