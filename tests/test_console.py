"""The run's progress display: plain lines without a terminal, a live table on one, the ETA."""

from __future__ import annotations

import re
from io import StringIO

from rich.console import Console

from lsdr.console import RunProgress, eta_seconds, format_duration
from lsdr.flows.progress import PhaseProgress


class SteppedClock:
    """A clock that reads the times it is given, one per call (the last one from then on)."""

    def __init__(self, *times: float) -> None:
        self.times = list(times)

    def __call__(self) -> float:
        """The next time."""
        return self.times.pop(0) if len(self.times) > 1 else self.times[0]


def tractor_events() -> list[PhaseProgress]:
    """A tractor phase of 15 bricks: 3 found done, then 11 run and 1 failed."""
    return [
        PhaseProgress("tractor", 15, cached=3),
        PhaseProgress("tractor", 15, done=2, cached=3),
        PhaseProgress("tractor", 15, done=11, cached=3, failed=1),
        PhaseProgress("tractor", 15, done=11, cached=3, failed=1, finished=True),
    ]


def test_eta_counts_only_units_run_in_the_phase() -> None:
    """Units left at the rate of the units run; nothing run yet gives no estimate."""
    # 2 units ran in 60 s: 13 left take 390 s, 30 s of which have passed since the last.
    assert eta_seconds(ran=2, left=13, run_time=60.0) == 390.0
    assert eta_seconds(ran=2, left=13, run_time=60.0, since_last=30.0) == 360.0
    assert eta_seconds(ran=2, left=1, run_time=60.0, since_last=45.0) == 0.0  # overdue
    assert eta_seconds(ran=0, left=12, run_time=5.0) is None
    assert eta_seconds(ran=4, left=0, run_time=5.0) == 0.0


def test_durations_read_as_a_person_writes_them() -> None:
    """Seconds under a minute, then minutes and seconds, then hours and minutes."""
    assert [format_duration(s) for s in (0, 45.4, 59.6, 133, 3600, 3725)] == [
        "0s",
        "45s",
        "1m00s",
        "2m13s",
        "1h00m",
        "1h02m",
    ]


def test_without_a_terminal_one_plain_line_per_finished_phase() -> None:
    """Each phase prints one line when it ends (counts and its time); nothing before."""
    stream = StringIO()
    display = RunProgress(Console(file=stream, width=80), live=False)
    with display:
        for event in tractor_events()[:-1]:
            display(event)
        assert stream.getvalue() == ""
        display(tractor_events()[-1])
        display(PhaseProgress("sweeps", 0))
        display(PhaseProgress("sweeps", 0, finished=True))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert re.fullmatch(
        r"tractor: 15 units: 11 done, 3 already done, 1 failed \(\d+s\)", lines[0]
    ), lines[0]
    assert re.fullmatch(r"sweeps: 0 units: 0 done, 0 already done, 0 failed \(\d+s\)", lines[1])


def test_a_plain_line_is_never_wrapped() -> None:
    """A long phase line stays one line on a narrow console (logs are read line by line)."""
    stream = StringIO()
    display = RunProgress(Console(file=stream, width=30), live=False)
    display(PhaseProgress("brightneighbors", 12345, done=12345, finished=True))
    assert stream.getvalue().count("\n") == 1


def test_the_plain_line_carries_the_phase_time() -> None:
    """The time in a phase's line runs from its first event to its last (clock given)."""
    stream = StringIO()
    display = RunProgress(
        Console(file=stream, width=80), live=False, clock=SteppedClock(0, 50, 133)
    )
    display(PhaseProgress("zeropoints", 4))
    display(PhaseProgress("zeropoints", 4, done=2))
    display(PhaseProgress("zeropoints", 4, done=4, finished=True))
    assert stream.getvalue() == "zeropoints: 4 units: 4 done, 0 already done, 0 failed (2m13s)\n"


def test_live_table_shows_counts_elapsed_and_time_left() -> None:
    """On a terminal: a row per phase with the counts, the elapsed time and the estimate.

    3 bricks found done at t=0, 2 run by t=60; at t=90, 10 are left at 30 s a brick, less
    the 30 s since the last: 270 s.
    """
    stream = StringIO()
    console = Console(file=stream, force_terminal=True, color_system=None, width=120)
    display = RunProgress(console, live=False, clock=SteppedClock(0, 60, 90))
    display(PhaseProgress("tractor", 15, cached=3))
    display(PhaseProgress("tractor", 15, done=2, cached=3))
    console.print(display.table())
    [row] = [line for line in stream.getvalue().splitlines() if line.startswith("tractor")]
    assert row.split()[-5:] == ["2", "3", "0", "1m30s", "~4m30s"]
    assert "5/15" in row


def test_live_display_on_a_terminal_ends_with_every_phase_and_no_plain_lines() -> None:
    """The live table (rich, on a forced terminal) is left on screen with each phase's row."""
    stream = StringIO()
    console = Console(file=stream, force_terminal=True, color_system=None, width=120)
    with RunProgress(console, live=True) as display:
        for event in tractor_events():
            display(event)
        display(PhaseProgress("sweeps", 2))
        display(PhaseProgress("sweeps", 2, done=2, finished=True))
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stream.getvalue())  # cursor moves
    final = out[out.rindex("phase") :]  # the last rendering of the table
    # phase, bar, units, done, already done, failed, elapsed, left
    rows = {line.split()[0]: line.split() for line in final.splitlines()[1:] if line.strip()}
    assert rows["tractor"][2:6] == ["15/15", "11", "3", "1"]
    assert rows["sweeps"][2:6] == ["2/2", "2", "0", "0"]
    assert rows["tractor"][-1] == "finished" and rows["sweeps"][-1] == "finished"
    assert "units:" not in out  # no plain lines on a terminal


def test_a_phase_run_again_starts_a_new_row() -> None:
    """A phase name seen again after it finished is a new run of it: counts start over."""
    stream = StringIO()
    display = RunProgress(Console(file=stream, width=80), live=False)
    display(PhaseProgress("merge", 1, done=1, finished=True))
    display(PhaseProgress("merge", 2))
    assert display.phases["merge"].first.total == 2
    assert display.phases["merge"].ended is None
