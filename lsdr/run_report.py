"""The end of ``lsdr run``: one line per phase, failed and left-out units, the exit status.

Exit statuses:

- 0: every unit is done;
- 1: some units failed, at least one of them not because of the environment (bad data, a lost
  worker, out of memory, a timeout; the others completed), or none did but units were left out
  because an upstream unit failed before (a phase run alone), or ``publish`` refused a release
  with failed units;
- 2: bad input or usage (one line, no traceback), checked before anything starts: every
  option and the release directory, before the Prefect server, the Dask cluster or any write;
- 3: the only failures are the environment's (class ``environment``: a program, Python module
  or shared library is missing); install what the message names and rerun, which retries them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lsdr.flows.report import PhaseResult, PublishResult

EXIT_OK, EXIT_UNIT_FAILURES, EXIT_USAGE, EXIT_ENVIRONMENT = 0, 1, 2, 3
"""``lsdr``'s exit statuses: done; units failed; bad input or usage; only the environment."""


def exit_status(failure_classes: list[str], not_done: int = 0) -> int:
    """The run's exit status from its failed units' classes (see the module docstring).

    3 when every failure is the environment's (nothing is wrong with the data), 1 when any
    other unit failed, or when none failed but ``not_done`` units or phases were not run
    because an upstream unit failed (left out by a phase run alone after that failure, or a
    publish refused), 0 when every unit is done.
    """
    from lsdr.tasks.failures import ENVIRONMENT

    if not failure_classes:
        return EXIT_UNIT_FAILURES if not_done else EXIT_OK
    if all(cls == ENVIRONMENT for cls in failure_classes):
        return EXIT_ENVIRONMENT
    return EXIT_UNIT_FAILURES


LEFT_OUT_SHOWN = 20
"""Most left-out units (over all phases) or dry-run files the end-of-run report names."""


def report_results(results: list[PhaseResult]) -> None:
    """Print one line per phase, per failed unit and per left-out unit; exit with its status.

    The left-out units (not planned because an upstream unit failed) are named with their
    reason up to :data:`LEFT_OUT_SHOWN`, then counted; they make the run's status 1 when
    nothing failed in it (:func:`exit_status`).
    """
    from lsdr.flows.report import MergeResult, PublishResult
    from lsdr.tasks.failures import ENVIRONMENT

    classes: list[str] = []
    flat: list[PhaseResult] = []
    for result in results:
        if isinstance(result, MergeResult) and result.merge_calibs is not None:
            # Its failures are in merge's own list.
            flat.append(result.merge_calibs.model_copy(update={"failed": []}))
        flat.append(result)
    left_out = 0
    for result in flat:
        c = result.counts
        items = result.left_out
        what = result.left_out_what
        extra = f", {len(items)} {what}{'' if len(items) == 1 else 's'} left out" if items else ""
        print(f"{result.phase}: {c.done} done, {c.cached} already done, {c.failed} failed{extra}")
        for key, cls, message in result.failed:
            classes.append(cls)
            print(f"  FAILED {key} [{cls}]: {message}")
        if result.skipped:
            print(f"  NOT RUN: {result.skipped}")
        if isinstance(result, PublishResult) and result.dry_run:
            print_would_copy(result)
        shown = items[: max(LEFT_OUT_SHOWN - left_out, 0)]
        for key, reason in shown:
            print(f"  LEFT OUT {key}: {reason}")
        if len(items) > len(shown):
            print(f"  and {len(items) - len(shown)} more {what}(s) left out")
        left_out += len(items)
    environment = classes.count(ENVIRONMENT)
    if environment:
        print(
            f"{environment} unit(s) failed because of the environment: install what is named "
            "above, then rerun."
        )
    if len(classes) > environment:
        print(
            f"{len(classes) - environment} unit(s) failed: fix them, then "
            "`lsdr retry --phase P` and rerun."
        )
    if left_out and not classes:
        print(
            f"{left_out} unit(s) left out because an upstream unit failed: `lsdr status` lists "
            f"the failed units; fix them, then {retry_hint(flat)}, rerun that phase and this one."
        )
    skipped = sum(1 for result in flat if result.skipped)
    code = exit_status(classes, left_out + skipped)
    if code != EXIT_OK:
        raise SystemExit(code)


def print_would_copy(result: PublishResult) -> None:
    """A dry-run publish: how many files it would copy, the first ones named."""
    files = list(result.would_copy)
    total = result.would_copy_total
    print(f"  dry run: would copy {total} file(s)")
    for name in files[:LEFT_OUT_SHOWN]:
        print(f"    {name}")
    if total > min(len(files), LEFT_OUT_SHOWN):
        print(f"    and {total - min(len(files), LEFT_OUT_SHOWN)} more")


def retry_hint(results: list[PhaseResult]) -> str:
    """``lsdr retry --phase zeropoints``: the phases whose failures the left-out units name."""
    phases = sorted(
        {
            reason.partition(" failed: ")[0]
            for result in results
            for _, reason in result.left_out
            if " failed: " in reason
        }
    )
    if len(phases) == 1:
        return f"`lsdr retry --phase {phases[0]}`"
    return f"`lsdr retry --phase P` ({', '.join(phases)})" if phases else "`lsdr retry --phase P`"
