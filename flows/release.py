"""``release``: CP images to a published release directory, every phase in order.

pretractor (discover … bricks) → tractor → brightneighbors → depth → summary → sweeps →
external → package → publish (when a destination is given).  Each phase starts when the one
before has finished all its units (they run one after the other on one Dask cluster).  Failed
units are reported and the later phases go on with what succeeded, leaving out (and naming) what
depended on a failed unit: a failed image's CCDs, a failed brick.  The chain stops before the
tractor phase only when discovery, the CCD tables, the kd-tree or the brick list failed.
Publishing is skipped when any unit failed, in this run or (the ledger's, as ``lsdr run publish``
refuses) before it, unless ``publish_with_failures`` is set.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from prefect import flow

from lsdr.flows.phases import run_phase, stops_chain
from lsdr.flows.pretractor import pretractor
from lsdr.flows.report import (
    PhaseResult,
    PublishResult,
    ReleaseResult,
    combined_summary,
    left_out_line,
)
from lsdr.flows.settings import ledger_for, settings_for, writing_release
from lsdr.infra.cluster import dask_cluster
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import PublishOptions, ReleaseOptions

log = logging.getLogger("lsdr.flows")

POST_TRACTOR = ("brightneighbors", "depth", "summary", "sweeps", "external", "package")
"""The phases after runbrick, in chain order (publish comes last, when asked)."""


@flow(name="release")
def release(
    release_dir: str,
    options: ReleaseOptions | None = None,
    settings: dict[str, Any] | None = None,
    dask_address: str | None = None,
) -> ReleaseResult:
    """Run the whole release; return the phases' results and the release summary's path."""
    o = options or ReleaseOptions()
    s = settings_for(release_dir, settings)
    layout = ReleaseLayout(s.release_dir)
    with writing_release(s):
        # What a nightly increment repeats: the same grid, region and products (docs/nightly.md).
        ledger_for(s).record_chain_options("release", o.model_dump_json())
        results: list[PhaseResult] = []
        with ExitStack() as stack:
            address = dask_address or stack.enter_context(dask_cluster(s))
            if not o.skip_pretractor:
                results.extend(
                    pretractor(
                        release_dir=str(s.release_dir),
                        options=o.pretractor,
                        settings=s.model_dump(mode="json", exclude={"release_dir"}),
                        dask_address=address,
                    )
                )
                stop = pretractor_stop(layout, results)
                if stop is not None:
                    log.error("release: %s; stopping before the tractor phase", stop)
                    results.append(combined_summary("tractor", [], skipped=stop))
                    return _finish(layout, results)
            for phase in (o.tractor, *(getattr(o, name) for name in POST_TRACTOR)):
                results.append(run_phase(phase.phase, s, address, phase))
            if o.destination is not None:
                failed = [r.phase for r in results if r.failed]
                if failed and not o.publish_with_failures:
                    log.error("release: not published: failed units in %s", ", ".join(failed))
                    results.append(_not_published(failed))
                else:
                    # The publish flow also checks the ledger: a unit failed before this run counts.
                    publish = PublishOptions(
                        destination=o.destination, publish_with_failures=o.publish_with_failures
                    )
                    results.append(run_phase("publish", s, address, publish))
        return _finish(layout, results)


def pretractor_stop(layout: ReleaseLayout, results: list[PhaseResult]) -> str | None:
    """Why the tractor phase cannot run after these pre-tractor results, or None when it can.

    When discover, merge (its tables), kdtree or the brick list failed, what is on disk is older
    than the survey (or missing): no brick is fitted on it.  Failed images are not a reason:
    they are left out of the tables, and the other images' bricks go on.
    """
    for r in results:
        if stops_chain(r.phase, r) or (r.phase == "bricks" and r.failed):
            return f"{r.phase} failed"
    if not layout.brick_list.exists():
        return "the pre-tractor phases wrote no brick list"
    return None


def _not_published(failed: list[str]) -> PublishResult:
    return combined_summary(
        "publish", [], result=PublishResult, skipped=f"failed units in {', '.join(failed)}"
    )


def _finish(layout: ReleaseLayout, results: list[PhaseResult]) -> ReleaseResult:
    """Write the summary (file and artifact) and return it with the phases' results."""
    text = summary_markdown(layout, results)
    path = layout.release_summary
    from lsdr.survey.core.fileio import write_text_atomic

    write_text_atomic(path, text)
    try:
        from prefect.artifacts import create_markdown_artifact
        from prefect.context import FlowRunContext

        if FlowRunContext.get() is not None:
            create_markdown_artifact(text, key="release-summary", description="release summary")
            plot_artifacts(release_plots(layout))
    except Exception as err:  # artifacts are a view; never fail the release for one
        log.warning("could not create the release summary artifact: %s", err)
    return ReleaseResult(phases=results, summary=str(path))


PLOT_ARTIFACT_MAX_BYTES = 2_000_000
"""A plot larger than this is named in the summary but not inlined as an image artifact."""


def plot_artifacts(plots: list[Path], prefix: str = "plot") -> None:
    """Each plot as an image artifact (``<prefix>-<name>``), the PNG inlined as a ``data:`` URL.

    The Prefect server serves no files of the release, so an image artifact pointing at the
    file would show nothing in a browser elsewhere; the bytes travel in the artifact instead.
    """
    import base64

    from prefect.artifacts import create_image_artifact

    for plot in plots:
        data = plot.read_bytes()
        if len(data) > PLOT_ARTIFACT_MAX_BYTES:
            log.warning("plot %s is %d bytes: not shown as an artifact", plot, len(data))
            continue
        url = "data:image/png;base64," + base64.b64encode(data).decode()
        key = f"{prefix}-" + "".join(c if c.isalnum() else "-" for c in plot.stem.lower())
        create_image_artifact(url, key=key, description=f"{plot.name} ({plot.parent})")


def release_products(layout: ReleaseLayout) -> list[tuple[str, Path]]:
    """Where the release's products are (those that exist)."""
    items = [
        ("tractor catalogues", layout.tractor_dir),
        ("coadds", layout.coadds_dir),
        ("brick summary", layout.brick_summary),
        ("depth histogram", layout.depth_histogram),
        ("sweeps", layout.sweeps_dir),
        ("external matches", layout.external_dir),
        (
            "checksums (one file per directory; the top level's)",
            layout.directory_checksums(layout.root),
        ),
        ("log tarballs", layout.logs_dir),
        ("plots", layout.plots_dir),
    ]
    return [(what, p) for what, p in items if p.exists()]


def release_plots(layout: ReleaseLayout) -> list[Path]:
    """The summary plots (PNG) of the release."""
    return layout.plots()


def summary_markdown(layout: ReleaseLayout, results: list[PhaseResult]) -> str:
    """The release summary: units per phase, failures, products, plots."""
    lines = [
        f"# Release {layout.dr}: {layout.root}",
        "",
        "| phase | done | already done | failed |",
    ]
    lines.append("|---|---|---|---|")
    for r in results:
        c = r.counts
        lines.append(f"| {r.phase} | {c.done} | {c.cached} | {c.failed} |")
    failures = [(r.phase, f) for r in results for f in r.failed]
    skipped = [r for r in results if r.skipped]
    if failures or skipped:
        lines += ["", "## Failed", ""]
        lines += [f"- {phase} {key} [{cls}]: {msg}" for phase, (key, cls, msg) in failures]
        lines += [f"- {r.phase} not run: {r.skipped}" for r in skipped]
    left_out = [r for r in results if r.left_out]
    if left_out:
        lines += ["", "## Left out (an upstream unit failed)", ""]
        lines += [f"- {left_out_line(r.phase, r.left_out_what, r.left_out)}" for r in left_out]
    lines += ["", "## Products", ""]
    lines += [f"- {what}: `{path}`" for what, path in release_products(layout)]
    plots = release_plots(layout)
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"- `{p}`" for p in plots]
    return "\n".join(lines) + "\n"
