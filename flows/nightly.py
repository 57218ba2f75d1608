"""``nightly``: the increment: the CP images that arrived since the last one, and what they touch.

Plan: the images not yet settled in the ledger (``tasks/nightly.py``: by path and stamp, not
by time).  None: the increment is a no-op (no cluster, no phase flow) and says so.  Otherwise
the release chain runs again with the options it last ran with and the region its bricks phase
recorded, on one Dask cluster: every unit whose inputs' bytes did not change is found done, so
what runs is the arrived images' zeropoints and merged calibs, the CCD tables, kd-tree and brick
list, the bricks those images' CCDs touch, and the post-tractor units that read those bricks
(their bright-neighbour masks and those of their neighbours, their depth maps, the sweep boxes
they fall in, the release-wide merges, checksums and log tarballs).  Then the images are
settled in the ledger (failed ones stay pending for the next night), the watermark moves when
the chain ran to its end, and the summary (file and artifact) lists the images and the bricks
redone.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from typing import Any

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field

from lsdr.flows.report import DiscoverResult, PhaseResult, TractorResult
from lsdr.flows.settings import ledger_for, settings_for, writing_release
from lsdr.infra.ledger import INCREMENT_SUCCEEDED, Ledger
from lsdr.survey.core.errors import UsageError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import NightlyOptions, ReleaseOptions
from lsdr.tasks import nightly as plan

log = logging.getLogger("lsdr.flows")


class NightlyImage(BaseModel):
    """One arrived image in the increment's result: why it counted, how it ended, its bricks."""

    model_config = ConfigDict(extra="forbid")

    image: str
    why: str
    state: str
    """done, outside, dropped, failed (pending: tried again next night), or planned (dry run)."""
    bricks: list[str] = Field(default_factory=list)
    reason: str | None = None


class NightlyResult(BaseModel):
    """What an increment did: its images, the bricks and units redone, the release's phases."""

    model_config = ConfigDict(extra="forbid")

    increment: int | None
    """The ledger's id of the increment (None for a dry run, which records nothing)."""
    status: str
    """``succeeded``, ``no-op`` (nothing arrived), ``stopped`` (the chain stopped before the
    tractor phase: nothing advances), or ``dry-run``."""
    watermark: str | None
    """When the last successful increment before this one finished (None: none had)."""
    images: list[NightlyImage] = Field(default_factory=list)
    bricks_redone: list[str] = Field(default_factory=list)
    units_run: dict[str, list[str]] = Field(default_factory=dict)
    """Per phase, the units that started in this increment (from the ledger's attempts)."""
    phases: list[PhaseResult] = Field(default_factory=list)
    summary: str | None = None
    """The summary file's path (None for a dry run)."""


@flow(name="nightly")
def nightly(
    release_dir: str,
    options: NightlyOptions | None = None,
    settings: dict[str, Any] | None = None,
) -> NightlyResult:
    """Process the images that arrived since the last increment, and only what they touch."""
    from lsdr.infra.cluster import dask_cluster

    o = options or NightlyOptions()
    s = settings_for(release_dir, settings)
    layout = ReleaseLayout(s.release_dir)
    with writing_release(s):
        ledger = ledger_for(s)
        chain = release_options(ledger, layout)
        seen = ledger.seen_images()
        if not seen and not ledger.increments():
            first = plan.seen_by_the_release(layout, _unit_states(ledger))
            seen = {i.image: i for i in first}
            if not o.dry_run:
                ledger.record_images(first)
        arrived = plan.arrivals(plan.cp_images(layout), seen)
        watermark = ledger.watermark()
        log.info("nightly: %d images arrived since %s", len(arrived), watermark or "the release")
        if o.dry_run:
            return _dry_run(layout, arrived, chain, watermark)

        increment = ledger.start_increment()
        if not arrived:
            result = NightlyResult(increment=increment, status="no-op", watermark=watermark)
            return _finish(layout, ledger, result)
        before = ledger.attempts()
        try:
            with ExitStack() as stack:
                from lsdr.flows.release import release

                address = stack.enter_context(dask_cluster(s))
                outcome = release(
                    release_dir=str(s.release_dir),
                    options=chain,
                    settings=s.model_dump(mode="json", exclude={"release_dir"}),
                    dask_address=address,
                )
        except BaseException:
            ledger.finish_increment(
                increment, "failed", new_images=len(arrived), bricks=0, summary=""
            )
            raise
        ran = plan.units_started(before, ledger.attempts())
        stopped = any(r.phase == "tractor" and r.skipped for r in outcome.phases)
        images = _settle(
            layout, ledger, arrived, increment, outcome.phases, chain, record=not stopped
        )
        result = NightlyResult(
            increment=increment,
            status="stopped" if stopped else INCREMENT_SUCCEEDED,
            watermark=watermark,
            images=images,
            bricks_redone=ran.get("tractor", []),
            units_run=ran,
            phases=outcome.phases,
        )
        return _finish(layout, ledger, result)


def release_options(ledger: Ledger, layout: ReleaseLayout) -> ReleaseOptions:
    """The release as it last ran (:func:`lsdr.tasks.recorded.release_record`), or a UsageError."""
    from lsdr.tasks.recorded import release_record

    options = release_record(ledger, layout)
    if options is None:
        raise UsageError(
            f"{layout.root}: no release has run here (the ledger records none): "
            "run 'lsdr run release' first; the increment repeats it"
        )
    return options


def _unit_states(ledger: Ledger) -> dict[tuple[str, str], str]:
    """The states of the image units (zeropoints, merged calibs) by (phase, key)."""
    return {
        (phase, r.key): r.state
        for phase in ("zeropoints", "merge-calibs")
        for r in ledger.rows(phase)
    }


def _settle(
    layout: ReleaseLayout,
    ledger: Ledger,
    arrived: list[plan.Arrival],
    increment: int,
    phases: list[PhaseResult],
    chain: ReleaseOptions,
    *,
    record: bool,
) -> list[NightlyImage]:
    """Each arrived image's end and bricks; recorded in the ledger when the chain went through."""
    from lsdr.survey.pretractor.bricklist import read_brick_list
    from lsdr.survey.pretractor.discover import read_image_list

    discovered = next((r for r in phases if isinstance(r, DiscoverResult)), None)
    dropped = {str(d[0]): str(d[1]) for d in (discovered.dropped if discovered else [])}
    listed = read_image_list(layout) if layout.image_list.exists() else []
    bricks = read_brick_list(layout) if layout.brick_list.exists() else []
    tractor = chain.tractor
    touched = plan.bricks_touched_by_ccds(
        layout, [a.image for a in arrived], bricks, tractor.width, tractor.pixscale
    )
    settled = plan.settle_arrivals(
        arrived, increment, listed, dropped, _unit_states(ledger), touched
    )
    if record:
        ledger.record_images(settled.images)
    why = {a.image: a.why for a in arrived}
    return [
        NightlyImage(
            image=i.image,
            why=why[i.image],
            state=i.state,
            bricks=settled.touched.get(i.image, []),
            reason=i.reason,
        )
        for i in settled.images
    ]


def _dry_run(
    layout: ReleaseLayout,
    arrived: list[plan.Arrival],
    chain: ReleaseOptions,
    watermark: str | None,
) -> NightlyResult:
    """What an increment would process: the images, and the bricks their headers' CCDs touch."""
    from lsdr.survey.pretractor.bricklist import read_brick_list

    bricks = read_brick_list(layout) if layout.brick_list.exists() else []
    t = chain.tractor
    touched = plan.bricks_touched_by_headers(
        layout, [a.image for a in arrived], bricks, t.width, t.pixscale
    )
    images = [
        NightlyImage(image=a.image, why=a.why, state="planned", bricks=touched.get(a.image, []))
        for a in arrived
    ]
    result = NightlyResult(increment=None, status="dry-run", watermark=watermark, images=images)
    _artifact(summary_markdown(layout, result))
    return result


def _finish(layout: ReleaseLayout, ledger: Ledger, result: NightlyResult) -> NightlyResult:
    """Write the summary (file, atomically, and artifact); record the increment's end."""
    from lsdr.survey.core.fileio import write_text_atomic

    increment = result.increment
    assert increment is not None
    path = plan.summary_path(layout)
    result = result.model_copy(update={"summary": str(path)})
    text = summary_markdown(layout, result)
    write_text_atomic(path, text)
    _artifact(text)
    status = INCREMENT_SUCCEEDED if result.status == "no-op" else result.status
    ledger.finish_increment(
        increment,
        status,
        new_images=len(result.images),
        bricks=len(result.bricks_redone),
        summary=str(path),
    )
    return result


def _artifact(text: str) -> None:
    """The summary as the flow run's markdown artifact (a view: never fails the increment)."""
    try:
        from prefect.artifacts import create_markdown_artifact
        from prefect.context import FlowRunContext

        if FlowRunContext.get() is not None:
            create_markdown_artifact(text, key="nightly-summary", description="nightly increment")
    except Exception as err:
        log.warning("could not create the nightly summary artifact: %s", err)


def summary_markdown(layout: ReleaseLayout, result: NightlyResult) -> str:
    """The increment's summary: the images that arrived, the bricks redone, the units run."""
    since = result.watermark or "the release (no increment before)"
    title = f"increment {result.increment}" if result.increment is not None else "dry run"
    lines = [f"# Nightly {title}: {layout.root}", "", f"Status: **{result.status}**; images "
             f"arrived since {since}: **{len(result.images)}**."]  # fmt: skip
    if not result.images:
        lines += ["", "No new images: nothing to do, nothing was run."]
        return "\n".join(lines) + "\n"
    lines += [
        "",
        "## Images",
        "",
        "| image | why | state | bricks | reason |",
        "|---|---|---|---|---|",
    ]
    for i in result.images:
        bricks = ", ".join(i.bricks) or "-"
        lines.append(f"| {i.image} | {i.why} | {i.state} | {bricks} | {i.reason or ''} |")
    if result.status == "dry-run":
        lines += ["", "Dry run: the bricks are those the images' CCD footprints touch (headers, "
                  "before any cut); nothing was run or recorded."]  # fmt: skip
        return "\n".join(lines) + "\n"
    outside = [i.image for i in result.images if i.state == "outside"]
    pending = [i for i in result.images if i.state == "failed"]
    lines += ["", f"## Bricks redone ({len(result.bricks_redone)})", ""]
    lines += [f"- {b}" for b in result.bricks_redone] or ["- none"]
    if outside:
        lines += ["", "## Outside the release's region (processed, no brick redone)", ""]
        lines += [f"- {i}" for i in outside]
    if pending:
        lines += ["", "## Failed (pending: tried again by the next increment)", ""]
        lines += [f"- {i.image}: {i.reason}" for i in pending]
    failed = [(r.phase, f) for r in result.phases for f in r.failed]
    if failed:
        lines += ["", "## Failed units", ""]
        lines += [f"- {phase} {key} [{cls}]: {msg}" for phase, (key, cls, msg) in failed]
    lines += ["", "## Units run", "", "| phase | run | units |", "|---|---|---|"]
    for phase, keys in result.units_run.items():
        shown = ", ".join(keys[:20]) + (f", … ({len(keys) - 20} more)" if len(keys) > 20 else "")
        lines.append(f"| {phase} | {len(keys)} | {shown} |")
    tractor = next((r for r in result.phases if isinstance(r, TractorResult)), None)
    if tractor is not None:
        c = tractor.counts
        lines += ["", f"tractor: {c.done} done, {c.cached} already done, {c.failed} failed."]
    return "\n".join(lines) + "\n"
