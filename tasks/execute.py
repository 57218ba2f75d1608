"""Running one unit: skip it when done (unless forced), else run it in its sandbox and record it.

A unit's failure is a result (classified, ``tasks/failures.py``), never an exception, and every
finished unit leaves its provenance sidecar (``tasks/sidecars.py``).  No Prefect here.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from functools import partial
from typing import Any

from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.engines.base import Outcome
from lsdr.tasks.deadline import UnitFailedError, run_unit_function
from lsdr.tasks.failures import (
    ENVIRONMENT,
    INFRA,
    SCIENCE,
    classify,
    missing_input_directory,
    no_space_path,
    one_line,
)
from lsdr.tasks.fingerprints import identity, input_digests
from lsdr.tasks.sandbox import peak_rss_mb
from lsdr.tasks.sidecars import FORCED_RERUN, settle, write_sidecar
from lsdr.tasks.unit import FORCE, Unit, UnitOutput, UnitResult


def execute_unit(
    fn: Callable[[ReleaseLayout, Unit], UnitOutput],
    layout: ReleaseLayout,
    unit: Unit,
    engine_version: str,
    *,
    memory_limit_mb: int | None = None,
    timeout_s: float | None = None,
) -> UnitResult:
    """Run one unit unless its sidecar says it is done; never raises for a unit's failure.

    The inputs are fingerprinted before the unit runs (reusing the planner's digests of
    unchanged files), and those digests are what its sidecar records as read.  A unit with the
    ``force`` flag runs even when done: a forced rerun, recorded as one in its sidecar
    (``forced``) and as its ledger message.  With ``timeout_s`` (its phase's timeout) the unit
    runs in a child process, stopped past it and recorded as class ``timeout``
    (``tasks/deadline.py``).
    """
    settled = settle(layout, unit, engine_version)
    done = (
        settled.result if settled.result is not None and settled.result.state == "cached" else None
    )
    forced = done is not None and bool(unit.flag(FORCE, False))
    if done is not None and not forced:
        return done
    try:
        digests = input_digests(settled.unit, engine_version, root=layout.root)
    except OSError as err:  # an input it may not read (EACCES): its failure, with no sidecar
        return UnitResult(
            phase=unit.phase,
            key=unit.key,
            state="failed",
            failure_class=classify(err),
            message=one_line(err),
            threads=unit.threads,
        )
    start_time = time.time()
    provenance: dict[str, Any] = {
        "unit_identity": identity(unit, engine_version, layout.root),
        "inputs": digests.records,
        "engine": unit.engine,
        "engine_version": engine_version,
        "options": unit.options,
        "started": start_time,
        "forced": forced,
    }
    failed = partial(
        UnitResult, phase=unit.phase, key=unit.key, state="failed", fingerprint=digests.fingerprint
    )
    start = time.monotonic()
    try:
        if unit.plan_error is not None:
            raise InputFileError(unit.plan_error)
        output, peak = run_unit_function(
            fn, layout, unit, memory_limit_mb=memory_limit_mb, timeout_s=timeout_s
        )
    except UnitFailedError as err:
        # The unit's child process failed, or was stopped at its timeout: its own report.
        result = failed(
            failure_class=err.failure_class,
            message=err.message,
            wall_s=time.monotonic() - start,
            peak_mem_mb=err.peak_mem_mb,
            threads=unit.threads,
        )
        write_sidecar(layout, result, err.trace, **provenance)
        return result
    except Exception as err:
        # MemoryError is an Exception too; anything else (KeyboardInterrupt) propagates.
        failure_class, message = classify(err), one_line(err)
        gone = missing_input_directory(unit.inputs) if failure_class == SCIENCE else None
        if gone is not None and isinstance(err, InputFileError | FileNotFoundError):
            failure_class, message = ENVIRONMENT, gone  # its input directory is not there
        full = no_space_path(err) if failure_class == INFRA else None
        result = failed(
            failure_class=failure_class,
            message=message,
            wall_s=time.monotonic() - start,
            peak_mem_mb=peak_rss_mb(),
            threads=unit.threads,
            no_space=(full or str(layout.root)) if full is not None else None,
        )
        write_sidecar(layout, result, traceback.format_exc(), **provenance)
        return result
    if output.outcome is Outcome.FAILED:
        # An engine's failure without an exception (a command's exit status): its own class.
        result = failed(
            failure_class=output.failure_class,
            message=output.message or f"{unit.phase} {unit.key} failed ({output.failure_class})",
            wall_s=time.monotonic() - start,
            peak_mem_mb=peak,
            summary=dict(output.summary),
            threads=unit.threads,
        )
        write_sidecar(layout, result, **provenance)
        return result
    result = UnitResult(
        phase=unit.phase,
        key=unit.key,
        state="done",
        fingerprint=digests.fingerprint,
        wall_s=time.monotonic() - start,
        peak_mem_mb=peak,
        message=FORCED_RERUN if forced else None,
        outputs=tuple(str(p) for p in output.paths),
        summary=dict(output.summary),
        threads=unit.threads,
    )
    write_sidecar(layout, result, **provenance)
    return result
