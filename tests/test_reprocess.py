"""``lsdr reprocess`` on a copy of the demo release: all found done unless forced, then exact.

Each test copies the session's demo release and reprocesses two of its cheapest bricks (by the
tractor wall time the ledger recorded) through the real CLI, on the session's Prefect server.
Which units ran is read from the ledger (``attempts`` grows with each start), the forced reruns
from the sidecars and the ledger's messages, the exclusion of two runs from the unit locks'
own history (``state/locks/``) and from the ledger's lost-start records; the products are
compared by value with the original release (``tests/release_values.py``).  Two requests at
once, through the deployment and its worker: ``tests/test_deployments.py``.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from demo_release import DemoRun, copy_release, lsdr, product_mtimes
from release_values import compare_releases
from reprocess_runs import cheapest_bricks

PER_BRICK = ("tractor", "brightneighbors", "depth", "verify")
"""The phases whose units are one per brick: what ``--force`` reruns for the region."""
ALSO_AFTER_FORCE = {"logs", "checksums"}
"""What a forced brick reruns besides its own units: a rerun brick's log is new (it records
its run), so its log directory's tarball is, and the release checksum file listing it."""

Rows = dict[tuple[str, str], tuple[int, str, str | None]]


@pytest.fixture
def release(demo_release: DemoRun, tmp_path: Path) -> Path:
    """A copy of the demo release, for one test to change."""
    return copy_release(demo_release.out, tmp_path / "release")


def ledger_rows(root: Path) -> Rows:
    """(phase, key) -> (attempts, state, message), read from the ledger's table."""
    with sqlite3.connect(root / "state" / "ledger.sqlite") as db:
        rows = db.execute("SELECT phase, key, attempts, state, message FROM units")
        return {(p, k): (a, s, m) for p, k, a, s, m in rows}


def started_again(before: Rows, after: Rows) -> dict[str, set[str]]:
    """Per phase, the units started since ``before`` (attempts grew), with how often."""
    out: dict[str, set[str]] = {}
    for (phase, key), (attempts, _, _) in after.items():
        if attempts > before.get((phase, key), (0, "", None))[0]:
            out.setdefault(phase, set()).add(key)
    return out


def sidecar(root: Path, phase: str, key: str) -> dict[str, object]:
    """A unit's provenance sidecar, found by the phase and key it records."""
    for path in (root / "state" / "provenance" / phase).glob("*.json"):
        doc = json.loads(path.read_text())
        if doc.get("key") == key:
            return dict(doc)
    raise AssertionError(f"no sidecar for {phase} {key}")


def is_release_checksums(rel: str) -> bool:
    """Whether a file is one of the release's checksum files (``legacysurvey_<dr>_….sha256sum``)."""
    name = rel.rsplit("/", 1)[-1]
    return name.startswith("legacysurvey_") and name.endswith(".sha256sum")


def reprocess(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``lsdr reprocess`` on ``root`` (two workers unless ``args`` say otherwise)."""
    workers = () if "--workers" in args else ("--workers", "2")
    return lsdr("reprocess", "--release-dir", str(root), *args, *workers)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_reprocess_is_all_cached_unless_forced_then_reruns_exactly_those_bricks(
    release: Path, demo_release: DemoRun
) -> None:
    """Without --force nothing runs; with it the two bricks' own units, and values stay equal.

    The other bricks' products keep their stamps; the forced units say so in their sidecars
    and ledger rows; the release-wide products still hold every brick.
    """
    bricks = cheapest_bricks(release, 2)
    before = ledger_rows(release)
    done = reprocess(release, "--bricks", ",".join(bricks))
    console = done.stdout + done.stderr
    assert done.returncode == 0, console[-3000:]
    assert started_again(before, ledger_rows(release)) == {}
    assert "tractor: 2 units: 0 done, 2 already done, 0 failed" in console

    stamps = product_mtimes(release)
    before = ledger_rows(release)
    done = reprocess(release, "--bricks", ",".join(bricks), "--force")
    console = done.stdout + done.stderr
    assert done.returncode == 0, console[-3000:]
    after = ledger_rows(release)
    again = started_again(before, after)
    for phase in PER_BRICK:
        assert again.get(phase) == set(bricks), (phase, again)
    assert set(again) <= {*PER_BRICK, *ALSO_AFTER_FORCE}, again
    for phase in PER_BRICK:
        for brick in bricks:
            attempts, state, message = after[(phase, brick)]
            assert (attempts, state) == (before[(phase, brick)][0] + 1, "done")
            assert message is not None and message.startswith("forced rerun"), (phase, message)
            assert sidecar(release, phase, brick)["forced"] is True
    # The other bricks' products keep their stamps, but the release's checksum files (one
    # per directory, written again by the checksums unit: compared by value below).
    others = set(release.joinpath("bricks.txt").read_text().split()) - set(bricks)
    changed = {rel for rel, t in product_mtimes(release).items() if stamps.get(rel) != t}
    touched = {rel for rel in changed for b in others if b in rel}
    assert changed and all(is_release_checksums(rel) for rel in touched), sorted(touched)
    comparison = compare_releases(demo_release.out, release)
    assert comparison.values_equal, [str(d) for d in comparison.differences[:10]]
