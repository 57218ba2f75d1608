"""The deployments of ``prefect.yaml`` on a real server and worker, triggered every way.

``lsdr server up`` on a copy of the demo release starts its server (SQLite), the worker on pool
``lsdr`` and deploys; each deployment then runs from a REST ``create_flow_run`` (the release
is done, so every unit is found done and the products stay equal to the demo's), one runs
from ``prefect deployment run``, bad parameters are refused, the same runs on PostgreSQL, and
an exposed server demands credentials.  ``lsdr server down`` stops what ``up`` started.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from demo_release import DemoRun, copy_release, lsdr
from pg import postgres, postgres_url  # noqa: F401  (fixtures)
from pydantic import BaseModel
from release_values import compare_releases
from reprocess_runs import cheapest_bricks, lock_holds

from lsdr.infra.prefect_server import free_port
from lsdr.infra.processes import pid_alive
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import NAMED_REGIONS, PHASE_OPTIONS
from lsdr.survey.core.reprocess_request import ReprocessRequest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]  # the shared demo, made here if first

REPO = Path(__file__).resolve().parents[1]
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
NIGHTLY_TIMEZONE = "America/Phoenix"
"""Kitt Peak's time (Mosaic, 90Prime): the nightly's timezone as a team would set it."""


@dataclass(frozen=True)
class Deployed:
    """A release whose server, worker and deployments ``lsdr server up`` started."""

    layout: ReleaseLayout
    url: str

    def api(self, method: str, path: str, body: Any = None, auth: str | None = None) -> Any:
        """One REST call; the decoded JSON answer (HTTP errors raise ``HTTPError``)."""
        return rest(self.url, method, path, body, auth)


def rest(url: str, method: str, path: str, body: Any = None, auth: str | None = None) -> Any:
    """A plain HTTP call to a Prefect server's REST API, as ``curl --retry`` would make it.

    503 (the server's SQLite busy while runs start: research P7) is retried, as Prefect's own
    client does; any other error is raised.
    """
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if auth is not None:
        request.add_header("Authorization", f"Basic {base64.b64encode(auth.encode()).decode()}")
    for attempt in range(6):
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                text = response.read().decode()
            return json.loads(text) if text else None
        except urllib.error.HTTPError as err:
            if err.code != 503 or attempt == 5:
                raise
            time.sleep(2**attempt)
    raise AssertionError("unreachable")


def project_deployments() -> dict[str, dict[str, Any]]:
    """``prefect.yaml``'s deployments by name, read as YAML (not through lsdr)."""
    data = yaml.safe_load((REPO / "prefect.yaml").read_text())
    return {d["name"]: d for d in data["deployments"]}


def server_up(release: Path, *flags: str, env: dict[str, str] | None = None) -> str:
    """``lsdr server up``; the API URL it prints (the test fails with its output otherwise)."""
    done = lsdr("server", "up", "--release-dir", str(release), *flags, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    exports = [ln for ln in done.stdout.splitlines() if ln.startswith("export PREFECT_API_URL=")]
    assert exports, done.stdout
    return exports[-1].split("=", 1)[1]


def server_down(release: Path) -> None:
    """``lsdr server down``; then neither the server nor the worker it recorded is alive."""
    state = ReleaseLayout(release).state_dir
    pids = [
        json.loads(p.read_text())["pid"]
        for p in state.glob("*.json")
        if p.stem in ("server", "worker")
    ]
    done = lsdr("server", "down", "--release-dir", str(release))
    assert done.returncode == 0, done.stderr
    assert not [pid for pid in pids if pid_alive(pid)], pids


def ledger_rows(layout: ReleaseLayout) -> list[tuple[Any, ...]]:
    """Every unit row of the release's ledger (read with sqlite3, not through lsdr)."""
    with sqlite3.connect(layout.state_dir / "ledger.sqlite") as db:
        return sorted(db.execute("SELECT phase, key, state, attempts, updated FROM units"))


FORMS: dict[str, tuple[str, type[BaseModel]]] = {"reprocess-region": ("request", ReprocessRequest)}
"""Deployments whose form is not a phase's ``options``: the parameter and its model."""

DEMO_REGION = list(NAMED_REGIONS["cookbook"])


def started_since(before: list[tuple[Any, ...]], after: list[tuple[Any, ...]]) -> set[str]:
    """``phase key`` of each unit started since ``before`` (its attempts grew; new ones: none).

    A unit new since then (the depth cut's, a phase the demo never ran) is not counted.
    """
    attempts = {(phase, key): n for phase, key, _, n, _ in before}
    return {
        f"{phase} {key}"
        for phase, key, _, n, _ in after
        if (phase, key) in attempts and n > attempts[(phase, key)]
    }


def deployment_ids(d: Deployed) -> dict[str, str]:
    """The server's deployments: name → id."""
    return {x["name"]: x["id"] for x in d.api("POST", "/deployments/filter", {"limit": 200})}


def wait_runs(d: Deployed, run_ids: list[str], timeout: float = 900) -> dict[str, dict[str, Any]]:
    """Poll the runs until each is in a terminal state; their JSON by id."""
    deadline = time.monotonic() + timeout
    runs: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        runs = {i: d.api("GET", f"/flow_runs/{i}") for i in run_ids}
        if all(r["state"]["type"] in TERMINAL for r in runs.values()):
            return runs
        time.sleep(2)
    states = {r["name"]: r["state"]["type"] for r in runs.values()}
    raise AssertionError(f"runs not finished after {timeout:.0f} s: {states}")


@pytest.fixture(scope="module")
def deployed(demo_release: DemoRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    """A copy of the demo release with its server, worker and deployments up (down at the end)."""
    root = copy_release(demo_release.out, tmp_path_factory.mktemp("deployed") / "release")
    try:
        env = {**os.environ, "LSDR_NIGHTLY_TIMEZONE": NIGHTLY_TIMEZONE}
        url = server_up(root, "--cluster", "local", env=env)
        yield Deployed(ReleaseLayout(root), url)
    finally:
        server_down(root)


def test_every_deployment_of_prefect_yaml_is_on_the_server_with_the_phase_form(
    deployed: Deployed,
) -> None:
    """Each deployment: pool ``lsdr``, this release, its options model's fields in its form."""
    wanted = project_deployments()
    found = {x["name"]: x for x in deployed.api("POST", "/deployments/filter", {"limit": 200})}
    assert set(found) == set(wanted)
    for name, d in found.items():
        assert d["work_pool_name"] == "lsdr", name
        assert d["parameters"] == {"release_dir": str(deployed.layout.root)}, name
        assert d["enforce_parameter_schema"] is True, name
        schema = d["parameter_openapi_schema"]
        assert schema["additionalProperties"] is False, name  # an unknown parameter: 409
        form_field, model = FORMS.get(name, ("options", PHASE_OPTIONS.get(name)))
        assert model is not None, name
        assert {"release_dir", form_field, "settings"} <= set(schema["properties"]), name
        form = schema["definitions"][model.__name__]
        assert form["additionalProperties"] is False, name
        for field, info in model.model_fields.items():
            assert form["properties"][field].get("description") == info.description, (name, field)
    # nightly at 02:00 in the timezone the server was brought up with (the observatory's).
    [schedule] = found["nightly"]["schedules"]
    assert schedule["schedule"]["cron"] == "0 2 * * *"
    assert schedule["schedule"]["timezone"] == NIGHTLY_TIMEZONE
    assert schedule["active"] is True


def test_each_deployment_runs_from_a_rest_call_and_finds_the_release_done(
    deployed: Deployed, demo_release: DemoRun, tmp_path: Path
) -> None:
    """A ``create_flow_run`` per deployment, with no options: all complete, all found done.

    No options: each run lays nothing over what the release last ran with (the demo's 1800²
    bricks at 0.524″, its region), so every unit is found done and the products stay equal;
    the model's defaults (3600² at 0.262″) would redo every brick on another grid.  Posted at
    once, the runs are writers of one release: each waits for the release's lock
    (``lock_wait``), so they run one after the other.
    """
    ids = deployment_ids(deployed)
    destination = tmp_path / "published"
    before = ledger_rows(deployed.layout)
    runs = []
    for name, deployment_id in ids.items():
        if name == "reprocess-region":
            continue  # its own tests trigger it, with their own parameters
        parameters: dict[str, Any] = {"settings": {"n_workers": 1, "lock_wait": True}}
        if name == "publish":
            parameters["options"] = {"destination": str(destination)}
        run = deployed.api(
            "POST", f"/deployments/{deployment_id}/create_flow_run", {"parameters": parameters}
        )
        runs.append(run["id"])
    finished = wait_runs(deployed, runs, timeout=1800)  # one after the other: the lock
    states = {r["name"]: (r["state"]["type"], r["state"].get("message")) for r in finished.values()}
    assert all(s == "COMPLETED" for s, _ in states.values()), states
    bricks = deployed.layout.brick_list.read_text().split()
    # Nothing ran again but, when the package run came after the depth cut's, the checksum
    # unit: the depth cut's new tables are files of the release its checksum files list.
    assert started_since(before, ledger_rows(deployed.layout)) <= {"checksums release"}
    assert "No new images" in deployed.layout.nightly_summary.read_text()
    summary = deployed.layout.release_summary.read_text()
    assert f"| tractor | 0 | {len(bricks)} | 0 |" in summary, summary
    # Equal to the demo's, but for the depth cut's tables: the demo never runs that phase.
    comparison = compare_releases(demo_release.out, deployed.layout.root)
    others = [d for d in comparison.differences if not d.path.startswith("depthcut/")]
    assert not others, [str(x) for x in others[:10]]
    new = {d.path for d in comparison.differences if d.what == "only in B"}
    assert {f"depthcut/{b[:3]}/ccds-{b}.fits" for b in bricks} <= new
    catalogues = sorted(f"tractor/{b[:3]}/tractor-{b}.fits" for b in bricks)
    found = (destination / "tractor").rglob("tractor-*.fits")
    published = sorted(str(p.relative_to(destination)) for p in found)
    assert published == catalogues  # the bright-neighbour step's -orig backups are not published
    first = catalogues[0]
    assert (destination / first).read_bytes() == (deployed.layout.root / first).read_bytes()
    # The release run's summary is its artifact, as the UI shows it.
    release_run = next(r for r in finished.values() if r["deployment_id"] == ids["release"])
    artifacts = deployed.api(
        "POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [release_run["id"]]}}}
    )
    assert [a["data"] for a in artifacts if a["key"] == "release-summary"] == [summary]
    # Its plots as image artifacts, the PNG bytes inlined (the server serves no release files).
    shown = [a["data"] for a in artifacts if a["type"] == "image"]
    assert all(url.startswith("data:image/png;base64,") for url in shown)
    decoded = sorted(base64.b64decode(url.split(",", 1)[1]) for url in shown)
    plots = deployed.layout.plots()
    assert plots and decoded == sorted(p.read_bytes() for p in plots)


def test_prefect_deployment_run_runs_one_brick(deployed: Deployed) -> None:
    """``prefect deployment run run-tractor/tractor --param options=…``: that brick, found done.

    The options name only the brick: the rest (the 1800² grid) is the release's record.
    """
    brick = deployed.layout.brick_list.read_text().split()[0]
    env = {**os.environ, "PREFECT_API_URL": deployed.url}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "prefect",
            "deployment",
            "run",
            "run-tractor/tractor",
            "--param",
            "options=" + json.dumps({"bricks": [brick]}),  # the grid: the release's own
            "--watch",
            "--watch-timeout",
            "600",
        ],
        capture_output=True,
        text=True,
        timeout=700,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Completed" in done.stdout
    latest = deployed.api(
        "POST",
        "/artifacts/filter",
        {"artifacts": {"key": {"any_": ["tractor-cached"]}}, "sort": "CREATED_DESC", "limit": 1},
    )
    rows = (
        json.loads(latest[0]["data"]) if isinstance(latest[0]["data"], str) else latest[0]["data"]
    )
    assert [r["unit"] for r in rows] == [brick], rows


def test_bad_parameters_are_refused_when_the_run_is_created(deployed: Deployed) -> None:
    """A wrong type or an unknown option: HTTP 409 naming it, and no run is created."""
    ids = deployment_ids(deployed)
    before = len(deployed.api("POST", "/flow_runs/filter", {"limit": 200}))
    cases = {
        "width": ({"options": {"width": "wide"}}, "'wide' is not of type 'integer'"),
        "unknown option": ({"options": {"brickz": ["1801p325"]}}, "brickz"),
    }
    for what, (parameters, expected) in cases.items():
        with pytest.raises(urllib.error.HTTPError) as refused:
            deployed.api(
                "POST", f"/deployments/{ids['tractor']}/create_flow_run", {"parameters": parameters}
            )
        assert refused.value.code == 409, what
        assert expected in refused.value.read().decode(), what
    assert len(deployed.api("POST", "/flow_runs/filter", {"limit": 200})) == before


def test_a_brick_name_that_is_a_path_fails_the_run_before_any_unit(deployed: Deployed) -> None:
    """Past the server's schema, the model's own check: the run fails naming the brick."""
    ids = deployment_ids(deployed)
    before = ledger_rows(deployed.layout)
    run = deployed.api(
        "POST",
        f"/deployments/{ids['tractor']}/create_flow_run",
        {"parameters": {"options": {"bricks": ["../../etc"]}}},
    )
    state = wait_runs(deployed, [run["id"]])[run["id"]]["state"]
    assert state["type"] == "FAILED", state
    assert "'../../etc' is not a brick name" in state["message"], state
    assert ledger_rows(deployed.layout) == before, "a unit was planned or started"


REFUSED_BY_THE_SERVER = {
    "unknown parameter": (
        {"request": {"region": "cookbook"}, "parms": 1},
        "'parms' was unexpected",
    ),
    "unknown request field": ({"request": {"region": "cookbook", "forse": True}}, "'forse'"),
    "box not numbers": ({"request": {"box": ["wide", 181, 32, 33]}}, "'wide'"),
}
"""reprocess-region parameters the server refuses (409, no run): its schema is closed."""

REFUSED_BY_THE_REQUEST = {
    "RA out of range": ({"box": [400, 401, 32, 33]}, "ra_min 400 is outside [0, 360]"),
    "min > max": ({"box": [180, 181, 33, 32]}, "dec_min 33 is not below dec_max 32"),
    "malformed brick": ({"bricks": ["18o1p325"]}, "'18o1p325' is not a brick name"),
    "brick that is a path": ({"bricks": ["../../etc"]}, "'../../etc' is not a brick name"),
    "brick not in the release": ({"bricks": ["0001p000"]}, "brick 0001p000 is not in the release"),
    "unknown phase": ({"region": "cookbook", "phases": ["sweep"]}, "unknown phase 'sweep'"),
    "phase not for a region": ({"bricks": ["1801p325"], "phases": ["merge"]}, "phase 'merge'"),
    "empty region": ({"box": [10, 11, -80, -79]}, "empty region: no brick of the release"),
    "too many bricks": ({"region": "cookbook"}, "more than reprocess_max_bricks (3)"),
}
"""Requests the flow refuses before any unit (the run FAILED, its message the reason)."""

PER_BRICK = {"tractor", "brightneighbors", "depth", "verify"}
"""The units a forced brick reruns, one per brick in each of these phases."""
ALSO_AFTER_FORCE = {"logs", "checksums"}
"""Besides: its log directory's tarball and the release checksum file (its log is new)."""


def reprocess_run(d: Deployed, parameters: dict[str, Any]) -> str:
    """A ``create_flow_run`` of the reprocess-region deployment, as a plain POST; the run's id."""
    deployment = deployment_ids(d)["reprocess-region"]
    run = d.api("POST", f"/deployments/{deployment}/create_flow_run", {"parameters": parameters})
    return str(run["id"])


def values_equal_but_depthcut(demo: Path, release: Path) -> list[str]:
    """The differences of the two releases by value, but for the depth cut's tables.

    The deployments' run of that phase adds them: the demo never runs it.
    """
    comparison = compare_releases(demo, release)
    return [str(d) for d in comparison.differences if not d.path.startswith("depthcut/")]


def test_reprocess_region_refuses_each_invalid_request_before_any_unit(
    deployed: Deployed,
) -> None:
    """Each refusal by REST: the server's (409, no run) or the request's (FAILED, the reason)."""
    before_runs = len(deployed.api("POST", "/flow_runs/filter", {"limit": 200}))
    for what, (parameters, expected) in REFUSED_BY_THE_SERVER.items():
        with pytest.raises(urllib.error.HTTPError) as refused:
            reprocess_run(deployed, parameters)
        assert refused.value.code == 409, what
        assert expected in refused.value.read().decode(), what
    assert len(deployed.api("POST", "/flow_runs/filter", {"limit": 200})) == before_runs

    before = ledger_rows(deployed.layout)
    runs = {}
    for what, (request, _) in REFUSED_BY_THE_REQUEST.items():
        settings = {"reprocess_max_bricks": 3} if what == "too many bricks" else {}
        runs[what] = reprocess_run(deployed, {"request": request, "settings": settings})
    finished = wait_runs(deployed, list(runs.values()))
    for what, (_, expected) in REFUSED_BY_THE_REQUEST.items():
        state = finished[runs[what]]["state"]
        assert state["type"] == "FAILED", (what, state)
        assert expected in state["message"], (what, state["message"])
        assert "Traceback" not in state["message"], what
    assert ledger_rows(deployed.layout) == before, "a unit was planned or started"


def test_lsdr_reprocess_runs_through_the_deployment_and_force_redoes_exactly_the_brick(
    deployed: Deployed, demo_release: DemoRun
) -> None:
    """With the worker up, ``lsdr reprocess --force`` is a run of the deployment, followed.

    It redoes the brick's own units and what lists them, nothing else; values stay equal.
    """
    root = deployed.layout.root
    [brick] = cheapest_bricks(root, 1)
    before = ledger_rows(deployed.layout)
    done = lsdr(
        "reprocess", "--release-dir", str(root), "--bricks", brick, "--force", "--workers", "1"
    )
    console = done.stdout + done.stderr
    assert done.returncode == 0, console[-3000:]
    assert "of deployment reprocess-region/reprocess-region" in console, console[-3000:]
    assert "| tractor | 1 | 0 | 0 |" in done.stdout, done.stdout[-3000:]
    again = started_since(before, ledger_rows(deployed.layout))
    phases = {unit.split()[0] for unit in again}
    assert {u for u in again if u.split()[0] in PER_BRICK} == {f"{p} {brick}" for p in PER_BRICK}
    assert phases <= PER_BRICK | ALSO_AFTER_FORCE, sorted(again)
    runs = deployed.api(
        "POST",
        "/flow_runs/filter",
        {"deployments": {"id": {"any_": [deployment_ids(deployed)["reprocess-region"]]}}},
    )
    mine = [r for r in runs if r["parameters"].get("request", {}).get("bricks") == [brick]]
    assert [r["state"]["type"] for r in mine] == ["COMPLETED"], mine
    assert not values_equal_but_depthcut(demo_release.out, root)


def test_two_overlapping_requests_by_rest_never_run_a_brick_twice_at_a_time(
    deployed: Deployed, demo_release: DemoRun
) -> None:
    """Two forced requests for the same two bricks, posted at once, run side by side.

    The worker runs both at once; each fits the larger brick first (the tractor flow's order),
    so the second to get there waits for the first.  Both complete; each brick ran once per
    run, one run after the other (the locks' own history), the waiting run said who held the
    lock, no start was lost (the ledger's retries), values stay equal.
    """
    root = deployed.layout.root
    bricks = cheapest_bricks(root, 2)
    before = ledger_rows(deployed.layout)
    since = time.time()
    parameters = {"request": {"bricks": bricks, "force": True}, "settings": {"n_workers": 1}}
    runs = [reprocess_run(deployed, parameters), reprocess_run(deployed, parameters)]
    finished = wait_runs(deployed, runs, timeout=1500)
    assert [finished[r]["state"]["type"] for r in runs] == ["COMPLETED"] * 2, finished

    holds = lock_holds(root, since)  # held by the runs' tractor sub-flow runs
    for brick in bricks:
        held = holds[("tractor", brick)]
        assert len(held) == 2 and len({run for _, _, run in held}) == 2, (brick, held)
    holders = sorted({run for held in holds.values() for _, _, run in held})
    for unit, held in holds.items():
        for first, second in itertools.pairwise(sorted(held)):
            assert first[1] <= second[0], (unit, sorted(held))  # never two holders at once
    warnings = deployed.api(
        "POST",
        "/logs/filter",
        {"logs": {"flow_run_id": {"any_": holders}, "level": {"ge_": 30}}, "limit": 200},
    )
    waited = [x["message"] for x in warnings if "waiting for its lock, held by" in x["message"]]
    assert any(f"unit tractor {b}: waiting" in m for m in waited for b in bricks), waited

    attempts = {(p, k): n for p, k, _, n, _ in ledger_rows(deployed.layout)}
    was = {(p, k): n for p, k, _, n, _ in before}
    for brick in bricks:
        assert attempts[("tractor", brick)] == was[("tractor", brick)] + 2, brick
    with sqlite3.connect(root / "state" / "ledger.sqlite") as db:
        assert db.execute("SELECT phase, key, reason FROM retries").fetchall() == []
    assert not values_equal_but_depthcut(demo_release.out, root)


@pytest.mark.timeout(900)
def test_deployments_on_postgresql(
    demo_release: DemoRun,
    tmp_path: Path,
    postgres_url: Any,  # noqa: F811
) -> None:
    """The server on PostgreSQL: deployed, one run from REST completes, down stops it all."""
    root = copy_release(demo_release.out, tmp_path / "release")
    url = server_up(root, "--database-url", postgres_url("prefect"))
    try:
        d = Deployed(ReleaseLayout(root), url)
        ids = deployment_ids(d)
        assert set(ids) == set(project_deployments())
        run = d.api(
            "POST",
            f"/deployments/{ids['kdtree']}/create_flow_run",
            {"parameters": {"settings": {"n_workers": 1}}},
        )
        finished = wait_runs(d, [run["id"]])
        assert finished[run["id"]]["state"]["type"] == "COMPLETED", finished
        server = json.loads((ReleaseLayout(root).state_dir / "server.json").read_text())
        assert server["database_url"].startswith("postgresql+asyncpg://")
    finally:
        server_down(root)


def test_an_exposed_server_needs_credentials(tmp_path: Path) -> None:
    """``--host 0.0.0.0``: refused without an auth string; with one, no credentials is 401."""
    root = tmp_path / "release"
    (root / "images").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    port = str(free_port())
    refused = lsdr(
        "server",
        "up",
        "--release-dir",
        str(root),
        "--host",
        "0.0.0.0",
        "--port",
        port,
        "--no-worker",
        env=env,
    )
    assert refused.returncode == 2
    assert refused.stderr.startswith(
        "lsdr: error: refusing to expose the Prefect server on 0.0.0.0"
    )
    assert "PREFECT_SERVER_API_AUTH_STRING" in refused.stderr and "Traceback" not in refused.stderr
    assert not (root / "state" / "server.json").exists()

    secret = "release-admin:" + base64.b16encode(os.urandom(8)).decode()
    env["PREFECT_SERVER_API_AUTH_STRING"] = secret
    url = server_up(root, "--host", "0.0.0.0", "--port", port, "--no-worker", env=env)
    try:
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            rest(url, "POST", "/flows/filter", {})
        assert anonymous.value.code == 401
        assert rest(url, "POST", "/flows/filter", {}, auth=secret) == []
        assert rest(url, "GET", "/health", auth=secret) is True
    finally:
        down = lsdr("server", "down", "--release-dir", str(root), env=env)
        assert down.returncode == 0, down.stderr
