"""Phase ``publish``: copy the release to its destination with rsync.

A release whose ledger holds failed units is not published (:mod:`lsdr.publish_gate`), as
the ``release`` chain does not publish one whose run failed units; a dry run still lists what
would be copied.  Failed ``publish`` units do not count: publishing again retries them.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow

from lsdr.flows.report import PublishResult, combined_summary, phase_summary
from lsdr.flows.runner import run_units
from lsdr.flows.settings import ledger_for, settings_for
from lsdr.publish_gate import blocking_failures, refusal
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import PublishOptions
from lsdr.tasks.publish import plan_publish, publish_unit

log = logging.getLogger("lsdr.flows")


@flow(name="publish")
def publish(
    release_dir: str,
    options: PublishOptions,
    settings: dict[str, Any] | None = None,
) -> PublishResult:
    """rsync the release (not ``images/`` links, not orchestration state) to ``destination``.

    A dry run lists what would be copied and records nothing.  Otherwise a release with failed
    units in its ledger is not published (the summary's ``skipped`` says why), unless
    ``publish_with_failures``.
    """
    from lsdr.survey.posttractor.publish import publish as rsync_release

    destination = options.destination
    s = settings_for(release_dir, settings)
    layout = ReleaseLayout(s.release_dir)
    if options.dry_run:
        result = rsync_release(layout, destination, dry_run=True)
        would_copy = list(result.files[:50])
        return combined_summary(
            "publish",
            [],
            result=PublishResult,
            dry_run=True,
            would_copy=would_copy,
            would_copy_total=result.n_files,
        )
    if not options.publish_with_failures:
        reason = refusal(s.release_dir, blocking_failures(ledger_for(s)))
        if reason is not None:
            log.error("publish: %s", reason)
            return combined_summary("publish", [], result=PublishResult, skipped=reason)
    report = run_units("publish", publish_unit, plan_publish(layout, destination), s)
    return phase_summary(report, result=PublishResult, destination=destination)
