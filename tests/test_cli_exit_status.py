"""Exit statuses and one-line errors: library-refused values, demo, left-out units, publish.

What the CLI library refuses, demo's options, what a run left out, and ``lsdr run publish`` on
a release with failed units.

The fast tests run the real ``lsdr`` on fresh directories; the last makes a small release for
real (a simulated 90Prime g survey whose second image is cut short, so its zeropoints unit
fails) on the session's Prefect server.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lsdr.flows.report import PhaseResult
from lsdr.run_report import LEFT_OUT_SHOWN, exit_status, report_results


def lsdr(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run this venv's ``lsdr`` (the session's Prefect server, when there is one, via the env)."""
    command = [sys.executable, "-m", "lsdr", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` (relative) with its file's SHA-256; "" for a directory."""
    return {
        path.relative_to(root).as_posix(): (
            hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        )
        for path in sorted(root.rglob("*"))
    }


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``lsdr: error:`` line on stderr of a run that exited 2, with no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lsdr: error: "), lines[0]
    assert "Usage:" not in result.stdout + result.stderr  # no usage box
    return lines[0]


# -- values the CLI library itself refuses -------------------------------------------------------
LIBRARY_REFUSED = [
    (("run", "tractor", "--width", "abc"), "--width", "'abc'"),
    (("run", "tractor", "-Wabc"), "--width", "'abc'"),
    (("run", "tractor", "--height=1e3"), "--height", "'1e3'"),
    (("run", "zeropoints", "--workers", "x"), "--workers", "'x'"),
    (("run", "zeropoints", "--batch-size", "1.5"), "--batch-size", "'1.5'"),
    (("run", "external", "--radius", "wide"), "--radius", "'wide'"),
    (("run", "discover", "--date-min", "2020-13-01"), "--date-min", "2020-13-01"),
    (("run", "tractor", "--no-such-option"), "--no-such-option", ""),
    (("run", "tractor", "--width"), "--width", "requires an argument"),
]
"""A command line the library refuses, the option and the value its one line must name."""


@pytest.mark.parametrize(("args", "option", "value"), LIBRARY_REFUSED)
def test_a_value_the_library_refuses_is_one_line_and_exit_2(
    fresh_release: Path, args: tuple[str, ...], option: str, value: str
) -> None:
    """One line naming the option and the value, status 2, nothing written (no state/)."""
    before = tree(fresh_release)
    line = one_error_line(lsdr("run", args[1], "--release-dir", str(fresh_release), *args[2:]))
    assert option in line and value in line, line
    assert not (fresh_release / "state").exists()
    assert tree(fresh_release) == before


def test_demo_with_a_value_of_the_wrong_type_writes_nothing(tmp_path: Path) -> None:
    """``lsdr demo --workers x``: the option and value named, no --out directory."""
    out = tmp_path / "demo"
    line = one_error_line(lsdr("demo", "--workers", "x", "--out", str(out)))
    assert "--workers 'x'" in line, line
    assert not out.exists()


def test_an_argument_the_library_refuses_is_named(tmp_path: Path) -> None:
    """``lsdr bricks at abc 10``: the argument (RA) and its value in one line."""
    line = one_error_line(lsdr("bricks", "at", "abc", "10"))
    assert "RA 'abc'" in line, line


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("bogus",), "no such command 'bogus'"),
        (("run", "tractor"), "missing option '--release-dir'"),
    ],
)
def test_other_usage_errors_are_one_line_pointing_at_the_help(
    args: tuple[str, ...], needle: str
) -> None:
    """An unknown command, a missing option: one line, status 2, where the help is."""
    line = one_error_line(lsdr(*args))
    assert needle in line and "--help" in line, line


def test_a_server_error_of_a_run_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A run whose Prefect server cannot be reached (a corrupt record) fails as a usage error.

    The server's error is not a SurveyError; the CLI still reports it as one line, status 2.
    """
    (tmp_path / "images").mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "server.json").write_text("{not json")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREFECT_") and k != "LSDR_PREFECT_API_URL"
    }
    command = [sys.executable, "-m", "lsdr", "run", "discover", "--release-dir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    # The run's "log: <file>" line comes first (as for every run), then the one error line.
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("lsdr: error: ")] == lines[-1:], lines
    expected = f"lsdr: error: {tmp_path / 'state' / 'server.json'}: unreadable server record"
    assert lines[-1].startswith(expected), lines[-1]


def test_help_is_still_the_help() -> None:
    """``--help`` exits 0 with the usage and options; a group without a command shows its help."""
    page = lsdr("run", "tractor", "--help")
    assert page.returncode == 0, page.stderr
    assert "Usage: " in page.stdout and " run tractor [OPTIONS]" in page.stdout
    assert "--width" in page.stdout and page.stderr == ""
    group = lsdr("run")
    assert " run [OPTIONS] COMMAND" in group.stdout and "tractor" in group.stdout
    assert "lsdr: error" not in group.stderr


# -- lsdr demo and lsdr simulate: every option before the simulation writes ----------------------
DEMO_REFUSED = [
    (("demo", "--workers", "0"), "--workers 0"),
    (("demo", "--seed", "-1"), "--seed -1"),
    (("simulate", "--workers", "0"), "--workers 0"),
    (("simulate", "--binning", "0"), "--binning 0"),
    (("simulate", "--passes", "0"), "--passes 0"),
    (("simulate", "--seed", "-2"), "--seed -2"),
]
"""A bad demo or simulate option and what its one line must start with."""


@pytest.mark.parametrize(("args", "named"), DEMO_REFUSED)
def test_bad_demo_option_is_refused_before_the_simulation(
    tmp_path: Path, args: tuple[str, ...], named: str
) -> None:
    """One line naming the option and the value, status 2, the --out directory not created."""
    out = tmp_path / "demo-release"
    line = one_error_line(lsdr(*args, "--out", str(out)))
    assert line.startswith(f"lsdr: error: {named}: "), line
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_demo_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    """``--out`` naming a file: refused in one line, the file untouched."""
    out = tmp_path / "a-file"
    out.write_text("mine\n")
    line = one_error_line(lsdr("demo", "--out", str(out)))
    assert f"--out {out}" in line, line
    assert out.read_text() == "mine\n"


# -- what a run left out: reported, and the status is 1 ----------------------------------------
def left_out_result(n: int) -> PhaseResult:
    """A phase result, as the flows return it, with ``n`` bricks left out and nothing failed."""
    return PhaseResult.model_validate(
        {
            "phase": "sweeps",
            "counts": {"done": 1, "cached": 0, "failed": 0},
            "failed": [],
            "left_out": [[f"brick{i:02d}", "tractor failed: truncated image"] for i in range(n)],
            "left_out_what": "brick",
        }
    )


def test_exit_status_counts_units_not_done() -> None:
    """Left-out units alone: 1; with failures, the failures' classes decide (3 stays 3)."""
    assert exit_status([], 0) == 0
    assert exit_status([], 2) == 1
    assert exit_status(["environment"], 2) == 3
    assert exit_status(["science"], 2) == 1


def test_report_names_the_left_out_units_up_to_a_limit(capsys: pytest.CaptureFixture[str]) -> None:
    """Each left-out unit with its reason, at most LEFT_OUT_SHOWN, then how many more; exit 1."""
    with pytest.raises(SystemExit) as exited:
        report_results([left_out_result(LEFT_OUT_SHOWN + 5)])
    assert exited.value.code == 1
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[0]
        == f"sweeps: 1 done, 0 already done, 0 failed, {LEFT_OUT_SHOWN + 5} bricks left out"
    )
    named = [line for line in lines if line.startswith("  LEFT OUT ")]
    assert len(named) == LEFT_OUT_SHOWN
    assert named[0] == "  LEFT OUT brick00: tractor failed: truncated image"
    assert "  and 5 more brick(s) left out" in lines
    assert "`lsdr retry --phase tractor`" in lines[-1]


# -- one real release with a failed unit ---------------------------------------------------------
def products(root: Path) -> dict[str, str]:
    """:func:`tree` without the ledger's SQLite files (a reader may checkpoint its WAL)."""
    return {k: v for k, v in tree(root).items() if not k.startswith("state/ledger.sqlite")}


def ledger_failed(root: Path) -> list[tuple[str, str, str, int]]:
    """The ledger's failed units (phase, key, class, starts), read-only."""
    from lsdr.infra.ledger import Ledger, default_url

    ledger = Ledger.existing(default_url(root / "state"), read_only=True)
    assert ledger is not None
    return [(f.phase, f.key, f.failure_class, f.attempts) for f in ledger.failed()]


def release_with_a_failed_image(root: Path) -> str:
    """Simulate two 90Prime g exposures, cut the second short, ``lsdr run pretractor``.

    Its zeropoints unit fails (science, exit 1) and merge leaves it out; every other unit is
    done.  Returns the bad image's key.  8000 stars/deg² keep each CCD's Gaia calibrators
    above the ``ccdnmatch`` cut (as ``runbrick_survey``), so the kd-tree has CCDs to index.
    """
    from test_failures_stay_local import truncate_in_second_ccd

    from lsdr.survey.core.bricks import RaDecBox
    from lsdr.survey.core.layout import ReleaseLayout
    from lsdr.survey.simulate.config import PassSpec, SimulationConfig
    from lsdr.survey.simulate.simulator import simulate_survey

    config = SimulationConfig(
        region=RaDecBox(180.4, 180.6, 32.4, 32.6),
        passes=(PassSpec("90prime", "g", 2),),
        binning=4,
        star_density=8000.0,
        reprocessed=0,
        workers=1,
    )
    simulate_survey(root, config)
    (root / "lsdr.yaml").write_text("n_workers: 1\n")
    images = sorted(p for p in (root / "images").rglob("*_ooi_*.fits.fz"))
    assert len(images) == 2, images
    truncate_in_second_ccd(images[1])
    bad = images[1].relative_to(root / "images").as_posix()
    run = lsdr("run", "pretractor", "--release-dir", str(root))
    assert run.returncode == 1, run.stdout + run.stderr[-2000:]
    [failed] = [line for line in run.stdout.splitlines() if "FAILED" in line]
    assert failed.startswith(f"  FAILED {bad} [science]: "), failed
    assert ReleaseLayout(root).image_list.read_text().split()[1] == bad
    return bad


@pytest.mark.timeout(900)
def test_a_release_with_a_failed_unit_reports_what_is_left_out_and_is_not_published(
    prefect_api: str, tmp_path: Path
) -> None:
    """One real release (one test, so one xdist worker builds it) with a failed zeropoints unit.

    ``lsdr run merge`` alone: nothing of its own fails, the image is left out and named, exit 1.
    ``lsdr run publish``: refused in one line (how many, which phase, the fix), exit 1, nothing
    copied or written, before any server or cluster; ``--dry-run`` still lists the files; the
    publish flow itself (deployments, the release chain) refuses the same way.
    """
    root = tmp_path / "release"
    bad = release_with_a_failed_image(root)

    merge = lsdr("run", "merge", "--release-dir", str(root))
    output = merge.stdout + merge.stderr[-2000:]
    assert merge.returncode == 1, output
    lines = merge.stdout.splitlines()
    assert not any("FAILED" in line for line in lines), output
    [phase] = [line for line in lines if line.startswith("merge: ")]
    assert phase.endswith(", 0 failed, 1 image left out"), phase
    [left] = [line for line in lines if line.startswith("  LEFT OUT ")]
    assert left.startswith(f"  LEFT OUT {bad}: zeropoints failed: "), left
    assert "`lsdr retry --phase zeropoints`" in lines[-1], lines[-1]

    dest = tmp_path / "published"
    command = ("run", "publish", "--release-dir", str(root), "--destination", str(dest))
    before, failed_before = products(root), ledger_failed(root)
    assert failed_before == [("zeropoints", bad, "science", 1)]
    refused = lsdr(*command)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    [line] = [x for x in refused.stderr.splitlines() if x.strip()]
    assert line.startswith("lsdr: not published: 1 unit failed (zeropoints 1): "), line
    assert f"`lsdr status --release-dir {root}`" in line, line
    assert f"`lsdr retry --release-dir {root} --phase zeropoints`" in line, line
    assert refused.stdout == ""  # refused before the log, the server or the cluster
    assert not dest.exists()
    assert products(root) == before and ledger_failed(root) == failed_before

    dry = lsdr(*command, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr[-2000:]
    assert "lsdr: dry run only: a publish would be refused: not published: 1 unit" in dry.stderr
    lines = dry.stdout.splitlines()
    assert "publish: 0 done, 0 already done, 0 failed" in lines, dry.stdout
    [count] = [line for line in lines if line.startswith("  dry run: would copy ")]
    assert int(count.split()[4]) > 0, count
    assert "    image-list.txt" in lines, dry.stdout
    assert not dest.exists()

    from lsdr.flows.publish import publish
    from lsdr.survey.core.phase_options import PublishOptions

    summary = publish.fn(release_dir=str(root), options=PublishOptions(destination=str(dest)))
    assert summary.counts.model_dump() == {"done": 0, "cached": 0, "failed": 0}
    assert summary.skipped.startswith("not published: 1 unit failed (zeropoints 1): ")
    assert not dest.exists()
