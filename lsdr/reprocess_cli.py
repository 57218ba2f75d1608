"""``lsdr reprocess``: a region of a release redone through the ``reprocess-region`` flow.

The flags become a :class:`~lsdr.survey.core.reprocess_request.ReprocessRequest`, the same
model a deployment's parameters are validated by, and the request is checked against the
release (its bricks, the maximum, the settings) before the Prefect server or the cluster
starts: a refused request is one line naming the flag, exit status 2, nothing written.  Then it
runs as ``lsdr run`` runs a phase (:func:`lsdr.run_cli.execute`), or, when ``lsdr server up``
runs the release's worker, as a run of the ``reprocess-region`` deployment that the worker picks
up (:func:`through_deployment`): the same run the UI, ``prefect deployment run`` or a REST call
would make, watched here until it ends.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from lsdr import options_check as check
from lsdr.cli_options import Engine, ReleaseDir, Verbose, Wait, Workers
from lsdr.survey.core.errors import UsageError
from lsdr.survey.core.phase_options import NAMED_REGIONS
from lsdr.survey.core.reprocess_request import (
    REPROCESS_PHASES,
    ReprocessRequest,
    request_error_line,
)

FLAGS = {
    "box": "--region",
    "region": "--region",
    "bricks": "--bricks",
    "phases": "--phases",
    "engine": "--engine",
    "profile": "--profile",
    "priority": "--priority",
}
"""The flag of each request field (a box and a named region are both ``--region``)."""


def request_from_flags(
    region: str | None,
    bricks: str | None,
    phases: str | None,
    engine: str | None = None,
    profile: str | None = None,
    *,
    force: bool = False,
    allow_large: bool = False,
    priority: int | None = None,
) -> ReprocessRequest:
    """The request the flags give; a refused one is a :class:`UsageError` naming its flag."""
    doc: dict[str, Any] = {"force": force, "allow_large": allow_large}
    if region is not None:
        doc["region" if region in NAMED_REGIONS else "box"] = region
    if bricks is not None:
        doc["bricks"] = _names(bricks)
    if phases is not None:
        doc["phases"] = _names(phases)
    given = {"engine": engine, "profile": profile, "priority": priority}
    doc.update({k: v for k, v in given.items() if v is not None})
    try:
        return ReprocessRequest.model_validate(doc)
    except ValidationError as err:
        raise _flag_error(err, doc) from None


def _names(text: str) -> list[str]:
    """A comma-separated list (``--bricks a,b``), empty items dropped."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _flag_error(err: ValidationError, doc: dict[str, Any]) -> UsageError:
    """The first refused field as ``--flag value: reason`` (the whole request: the reason)."""
    first = err.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    if field not in FLAGS:
        return UsageError(request_error_line(err))
    reason = str(first["msg"]).removeprefix("Value error, ")
    value = doc.get(field)
    if isinstance(value, list):  # the one item the reason names, else them all
        value = next((v for v in value if repr(v) in reason), ",".join(map(str, value)))
    return check.option_error(FLAGS[field], value, UsageError(reason))


def reprocess(
    release_dir: ReleaseDir,
    region: Annotated[
        str | None,
        typer.Option(
            "--region",
            help="RA/Dec box 'ra_min,ra_max,dec_min,dec_max' (degrees; ra_min > ra_max crosses "
            f"RA 0) or a named region ({', '.join(NAMED_REGIONS)}): the release's bricks "
            "whose centre lies in it.",
        ),
    ] = None,
    bricks: Annotated[
        str | None,
        typer.Option("--bricks", help="These bricks of the release, comma-separated."),
    ] = None,
    phases: Annotated[
        str | None,
        typer.Option(
            "--phases",
            help=f"Phases to run, comma-separated. Default: {','.join(REPROCESS_PHASES)}.",
        ),
    ] = None,
    engine: Engine = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", help="Cluster profile (default: the release's setting)."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force/--no-force", help="Recompute the region's bricks even when they are done."
        ),
    ] = False,
    allow_large: Annotated[
        bool,
        typer.Option(
            "--allow-large/--no-allow-large",
            help="Allow more bricks than the reprocess_max_bricks setting (default 1000).",
        ),
    ] = False,
    priority: Annotated[
        int | None,
        typer.Option("--priority", help="Recorded with the run; orders nothing in lsdr."),
    ] = None,
    deployment: Annotated[
        bool | None,
        typer.Option(
            "--deployment/--no-deployment",
            help="Run it as a run of the reprocess-region deployment, picked up by the "
            "release's worker (default: when 'lsdr server up' runs one), or in this process.",
        ),
    ] = None,
    workers: Workers = None,
    wait: Wait = False,
    verbose: Verbose = False,
) -> None:
    """Reprocess a region of a release: its bricks, then what reads them (what changed).

    --force recomputes the region's bricks even when done. Give the region as --region (a box
    or a name) or --bricks. Checked before anything starts; two runs over overlapping regions
    wait for each other unit by unit.
    """
    request = request_from_flags(
        region,
        bricks,
        phases,
        engine,
        profile,
        force=force,
        allow_large=allow_large,
        priority=priority,
    )
    given = {"n_workers": workers, "lock_wait": wait or None, **request.setting_overrides()}
    overrides = {k: v for k, v in given.items() if v is not None}
    check_request(release_dir, request, overrides)
    worker = release_worker(release_dir)
    if deployment and worker is None:
        raise UsageError(
            f"--deployment: no worker runs for {release_dir}: start one with "
            f"'lsdr server up --release-dir {release_dir}'"
        )
    if worker is not None and deployment is not False:
        raise typer.Exit(through_deployment(release_dir, request, overrides))
    from lsdr.run_cli import execute

    execute(release_dir, overrides, [("reprocess-region", request)], verbose=verbose)


DEPLOYMENT = "reprocess-region/reprocess-region"
"""The deployment ``prefect.yaml`` makes of the flow (``flow name/deployment name``)."""


def release_worker(release_dir: Path) -> Any:
    """The release's running Prefect worker (``lsdr server up``), or None."""
    from lsdr.infra.prefect_worker import worker_status
    from lsdr.survey.core.layout import ReleaseLayout

    return worker_status(ReleaseLayout(release_dir).state_dir)


def through_deployment(
    release_dir: Path, request: ReprocessRequest, overrides: dict[str, Any]
) -> int:
    """Create a run of the deployment with this request, follow it to its end; exit status.

    0 when the run completed, 1 otherwise (its state's message printed).  The run's summary
    (its ``reprocess-summary`` artifact) is printed as the UI shows it.
    """
    import asyncio
    import os

    from lsdr.infra.prefect_server import client_environment, server_status
    from lsdr.infra.settings import load_settings
    from lsdr.survey.core.layout import ReleaseLayout

    settings = load_settings(release_dir, **overrides)
    # The worker's own server (not a PREFECT_API_URL of the caller's): it has the deployment.
    server = server_status(ReleaseLayout(settings.release_dir).state_dir)
    if server is None:
        raise UsageError(
            f"the Prefect server of {release_dir} is down but its worker runs: "
            f"'lsdr server up --release-dir {release_dir}' starts it again"
        )
    os.environ.update(client_environment(server))
    url = server.url
    parameters = {
        "release_dir": str(settings.release_dir),
        "request": request.model_dump(mode="json", exclude_defaults=True),
        "settings": overrides,
    }
    return asyncio.run(_follow(url, parameters))


async def _follow(url: str, parameters: dict[str, Any]) -> int:
    """Submit, print the run's page and each new state, then its summary; the exit status."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.exceptions import ObjectNotFound

    ui = url.removesuffix("/api")
    async with get_client() as client:
        try:
            deployment = await client.read_deployment_by_name(DEPLOYMENT)
        except ObjectNotFound:
            raise UsageError(
                f"the release's Prefect server ({ui}) has no deployment {DEPLOYMENT}: "
                "'lsdr server up' deploys prefect.yaml"
            ) from None
        run = await client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
        print(f"flow run {run.name} of deployment {DEPLOYMENT}: {ui}/runs/flow-run/{run.id}")
        shown = None
        while True:
            run = await client.read_flow_run(run.id)
            state = run.state
            if state is not None and state.name != shown:
                shown = state.name
                print(f"flow run {run.name}: {state.name}", flush=True)
            if state is not None and state.is_final():
                break
            await asyncio.sleep(2)
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    for artifact in artifacts:
        if artifact.key == "reprocess-summary" and isinstance(artifact.data, str):
            print(artifact.data, end="")
    if state.is_completed():
        return 0
    print(f"lsdr: reprocess-region {state.name}: {state.message}", file=sys.stderr)
    return 1


def check_request(release_dir: Path, request: ReprocessRequest, overrides: dict[str, Any]) -> None:
    """The request against the release (its bricks, the maximum, the settings): reads only."""
    from lsdr.infra.settings import load_settings
    from lsdr.survey.core.layout import ReleaseLayout, check_release_dir
    from lsdr.tasks.reprocess import plan_reprocess

    check.setting_overrides(overrides)
    check_release_dir(release_dir)
    settings = load_settings(release_dir, **overrides)
    plan_reprocess(ReleaseLayout(settings.release_dir), request, settings)
