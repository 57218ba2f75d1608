"""The release's Prefect server killed (SIGKILL of its pid): found down, started again, outlived.

Every command is the real ``python -m lsdr`` in a process of its own, on a release of its own
with its own server (the session's ``prefect_api`` is not used: it must not be killed).  The
survey is the tiny simulated one (one camera, one band, four exposures: four zeropoints units).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from release_values import compare_releases

RUN_TIMEOUT = 600.0
"""A bound on waiting for one command (a poll's end, not a speed requirement)."""


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any ``PREFECT_*``: each command finds the release's own server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(extra)
    return env


def lsdr(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run this venv's ``lsdr`` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "lsdr", *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=clean_env(**env),
        check=False,
    )


def record(root: Path) -> dict[str, Any]:
    """The release's ``state/server.json``."""
    found: dict[str, Any] = json.loads((root / "state" / "server.json").read_text())
    return found


def sigkill(pid: int) -> None:
    """SIGKILL ``pid`` and wait until it is gone (it is not our child: init reaps it)."""
    os.kill(pid, signal.SIGKILL)
    status = Path(f"/proc/{pid}/stat")
    while status.exists():
        try:
            if status.read_text().split(") ", 1)[1].startswith("Z"):
                break
        except (OSError, IndexError):
            break
        time.sleep(0.05)  # a poll, not a measure


def api(url: str, path: str, body: object) -> Any:
    """POST ``body`` as JSON to the server's REST API; the decoded answer.

    A 503 (the server's SQLite busy on a loaded machine, research P7) is asked again, as
    Prefect's own client does.
    """
    for attempt in range(10):
        request = urllib.request.Request(
            f"{url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as err:
            if err.code != 503 or attempt == 9:
                raise
            time.sleep(1.0)  # a back-off, not a measure
    raise AssertionError("unreachable")


def simulate(root: Path) -> None:
    """The tiny survey: 90prime g, four exposures in 0.3° × 0.3° (four zeropoints units)."""
    made = lsdr(
        *("simulate", "--out", str(root), "--camera", "90prime", "--band", "g"),
        *("--passes", "4", "--binning", "4", "--workers", "1"),
        *("--ra-min", "180", "--ra-max", "180.3", "--dec-min", "32", "--dec-max", "32.3"),
    )
    assert made.returncode == 0, made.stderr


def ledger_rows(root: Path, phase: str) -> list[tuple[str, str, int]]:
    """(key, state, attempts) of the phase's units, read from the ledger file directly."""
    with sqlite3.connect(f"file:{root}/state/ledger.sqlite?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT key, state, attempts FROM units WHERE phase = ? ORDER BY key", (phase,)
        ).fetchall()
    return [(str(k), str(s), int(a)) for k, s, a in rows]


def done_units(root: Path, phase: str) -> int:
    """How many of the phase's units the ledger has done (0 before it exists)."""
    try:
        return sum(state == "done" for _, state, _ in ledger_rows(root, phase))
    except sqlite3.Error:
        return 0


class Listener:
    """A TCP listener on a port that counts the connections made to it (none expected)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        """Stop listening."""
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_killed_server_is_down_then_up_again_on_its_port_and_database(tmp_path: Path) -> None:
    """``server status`` says down (exit 1, no traceback); ``up`` reuses port, database, runs."""
    root = tmp_path / "release"
    root.mkdir()
    release = ("--release-dir", str(root))
    try:
        up = lsdr("server", "up", *release, "--no-worker")
        assert up.returncode == 0, up.stdout + up.stderr
        first = record(root)
        flow = api(first["url"], "/flows/", {"name": "before-the-crash"})
        made = api(first["url"], "/flow_runs/", {"flow_id": flow["id"], "name": "crashed-once"})

        sigkill(int(first["pid"]))

        status = lsdr("server", "status", *release)
        assert status.returncode == 1, status.stdout + status.stderr
        assert "Traceback" not in status.stderr
        assert status.stdout.splitlines() == [
            f"the Prefect server of {root} is down: pid {first['pid']} ({first['url']}) ended "
            f"without 'lsdr server down'; 'lsdr server up --release-dir {root}' starts it again "
            f"on port {first['port']} with database {first['database_url']}"
        ]
        assert record(root) == first  # status wrote nothing

        again = lsdr("server", "up", *release, "--no-worker")
        assert again.returncode == 0, again.stdout + again.stderr
        second = record(root)
        assert second["pid"] != first["pid"]
        assert (second["port"], second["url"]) == (first["port"], first["url"])
        assert second["database_url"] == first["database_url"]
        assert again.stdout.splitlines()[0] == (
            f"the Prefect server of {root} (pid {first['pid']}) had ended without "
            "'lsdr server down': started again on the same port and database"
        )
        runs = api(second["url"], "/flow_runs/filter", {"limit": 50})
        assert [(r["id"], r["name"]) for r in runs] == [(made["id"], "crashed-once")]
    finally:
        lsdr("server", "down", *release)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_a_run_whose_server_is_killed_finishes_its_units_and_says_so(tmp_path: Path) -> None:
    """Its server SIGKILLed while units run, ``lsdr run zeropoints`` runs every unit once.

    It ends with exit status 0 (every unit done) and one line saying what it could not report;
    0 units lost, 0 run twice (one start each in the ledger); the products equal an undisturbed
    run's by value.  ``lsdr status`` then reads the ledger without contacting any server: a
    listener on the dead server's port counts no connection.
    """
    root = tmp_path / "release"
    simulate(root)
    release = ("--release-dir", str(root))
    up = lsdr("server", "up", *release, "--no-worker")
    assert up.returncode == 0, up.stdout + up.stderr
    server = record(root)
    try:
        discovered = lsdr("run", "discover", *release, "--workers", "1")
        assert discovered.returncode == 0, discovered.stderr
        undisturbed = tmp_path / "undisturbed"
        shutil.copytree(root, undisturbed, symlinks=True)
        quiet = lsdr(
            *("run", "zeropoints", "--release-dir", str(undisturbed), "--workers", "1"),
            PREFECT_API_URL=server["url"],
        )
        assert quiet.returncode == 0, quiet.stderr
        expected = ledger_rows(undisturbed, "zeropoints")
        assert len(expected) == 4 and {s for _, s, _ in expected} == {"done"}

        run = subprocess.Popen(
            [
                *(sys.executable, "-m", "lsdr", "run", "zeropoints", *release),
                *("--workers", "1", "--batch-size", "1"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        while done_units(root, "zeropoints") < 1:
            assert run.poll() is None, run.communicate()
            time.sleep(0.05)  # a poll, not a measure
        sigkill(int(server["pid"]))
        out, err = run.communicate(timeout=RUN_TIMEOUT)
    finally:
        lsdr("server", "down", *release)

    assert run.returncode == 0, out + err
    assert "Traceback" not in err, err
    assert "zeropoints: 4 done, 0 already done, 0 failed" in out + err
    lost = [line for line in err.splitlines() if "went away" in line and line.startswith("lsdr:")]
    assert lost == [
        f"lsdr: the Prefect server {server['url']} went away at {lost[0].split(' at ')[1][:23]}: "
        "from then on this run's flow and task states, logs and artifacts were not reported to "
        f"it (the units ran; every one is in the ledger: lsdr status --release-dir {root}); "
        f"'lsdr server up --release-dir {root}' restarts it on the same port and database"
    ], err
    assert "--- Error logging to API ---" not in err
    assert ledger_rows(root, "zeropoints") == [(k, "done", 1) for k, _, _ in expected]
    comparison = compare_releases(undisturbed, root)
    assert comparison.equal, comparison.differences

    listener = Listener(int(server["port"]))
    try:
        status = lsdr("status", *release, PREFECT_API_URL=server["url"])
    finally:
        listener.close()
    assert status.returncode == 0, status.stdout + status.stderr
    assert listener.connections == 0
    lines = status.stdout.splitlines()
    header = next(line for line in lines if "phase" in line and "┃" in line)
    row = next(line for line in lines if "zeropoints" in line)
    columns = [c.strip() for c in header.split("┃")[1:-1]]
    counts = dict(zip(columns, [c.strip() for c in row.split("│")[1:-1]], strict=True))
    assert counts["phase"] == "zeropoints" and counts["done"] == "4" and counts["total"] == "4"
    assert {counts[c] for c in columns if c not in ("phase", "done", "total")} == {"0"}
