"""Pictures of the Prefect UI: a release's latest run and its artifacts, by headless Chromium.

Usage: ``python infra/scripts/ui_screenshot.py RELEASE_DIR OUT_DIR [--flow release]
[--artifact release-summary --artifact plot-brick-summary-psfdepth]``.  The release's server
must be running (``lsdr server up``) and the flow must have run.  Writes ``ui-<flow>-run.png``
(the run page: its sub-flows and logs) and ``ui-<artifact key>.png`` for each artifact (its
latest version).  Chromium (Debian's ``chromium``) renders the single-page UI for a few seconds
of virtual time before each picture.  Used for the README's pictures of a release run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from lsdr.infra.prefect_server import server_status
from lsdr.survey.core.layout import ReleaseLayout


def query(api: str, path: str, body: dict[str, object]) -> list[dict[str, object]]:
    """POST a filter to the server's REST API; the list it answers."""
    request = urllib.request.Request(
        f"{api}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        found: list[dict[str, object]] = json.loads(response.read())
    return found


def latest_run(api: str, flow: str) -> str:
    """The id of the most recent flow run of ``flow`` on the server at ``api``."""
    body = {"flows": {"name": {"any_": [flow]}}, "sort": "START_TIME_DESC", "limit": 1}
    runs = query(api, "/flow_runs/filter", body)
    if not runs:
        raise SystemExit(f"no run of flow {flow!r} on {api}: run it first")
    return str(runs[0]["id"])


def latest_artifact(api: str, key: str) -> str:
    """The id of the latest artifact with ``key``."""
    body = {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1}
    found = query(api, "/artifacts/filter", body)
    if not found:
        raise SystemExit(f"no artifact {key!r} on {api}")
    return str(found[0]["id"])


def screenshot(url: str, out: Path, width: int = 1600, height: int = 1100) -> None:
    """Render ``url`` in headless Chromium and write ``out``."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium not found: apt-get install --no-install-recommends chromium")
    with tempfile.TemporaryDirectory() as profile:
        argv = [
            browser,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "--virtual-time-budget=20000",
            f"--screenshot={out.absolute()}",
            url,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
    if done.returncode != 0 or not out.exists():
        raise SystemExit(f"chromium failed ({done.returncode}): {done.stderr[-800:]}")


def main(argv: list[str] | None = None) -> int:
    """Find the run and its artifacts, take the pictures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("release_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--flow", default="release", help="Flow whose latest run is shown.")
    parser.add_argument(
        "--artifact",
        action="append",
        help="Artifact key to show (repeatable; default release-summary and one sky map).",
    )
    args = parser.parse_args(argv)
    info = server_status(ReleaseLayout(args.release_dir).state_dir)
    if info is None:
        raise SystemExit(f"no Prefect server for {args.release_dir}: lsdr server up first")
    ui = info.url.removesuffix("/api")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    pages = {f"{args.flow}-run": f"{ui}/runs/flow-run/{latest_run(info.url, args.flow)}"}
    for key in args.artifact or ["release-summary", "plot-brick-summary-psfdepth"]:
        pages[key] = f"{ui}/artifacts/artifact/{latest_artifact(info.url, key)}"
    for name, url in pages.items():
        out = args.out_dir / f"ui-{name}.png"
        screenshot(url, out)
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
