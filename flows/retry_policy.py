"""What a phase does with a unit that failed: resubmit it, or record the failure.

Failure policy (``docs/orchestration.md``): a lost worker (``KilledWorker`` after Dask's own
re-runs) or other infrastructure error → the batch's unfinished units are resubmitted until a
unit has been started ``max_attempts`` times; ``oom`` → the unit is resubmitted with half its
threads, down to one; ``timeout`` → the phase's timeout policy if it has one (bricks: once
more with ``--bail-out``), else recorded; ``science``/``usage`` → recorded, reported, never
blindly retried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from lsdr.infra.ledger import Ledger, UnitFinish
from lsdr.infra.settings import Settings
from lsdr.tasks.failures import attempts_exhausted
from lsdr.tasks.unit import Unit, UnitResult

log = logging.getLogger("lsdr.flows")


TimeoutPolicy = Callable[[Unit], Unit | None]
"""What to do with a unit that ran out of time: the unit to resubmit, or None to give up."""


def resubmission(
    phase: str,
    r: UnitResult,
    batch: list[Unit],
    on_timeout: TimeoutPolicy | None,
    attempts: Callable[[], int] = lambda: 0,
    max_attempts: int = 1,
) -> Unit | None:
    """The unit to resubmit after a unit of ``batch`` ended as ``r``, or None to keep ``r``.

    A timeout goes to the phase's ``on_timeout`` policy (without one it is a recorded failure);
    out of memory with more than one thread is resubmitted with half the threads; an ``infra``
    failure the unit reported itself (its command killed by a signal from outside) is
    resubmitted while its starts so far (``attempts()``, the ledger's) are below
    ``max_attempts``, and a brick resumes from its checkpoint.
    """
    if r.state == "failed" and r.failure_class == "infra":
        started = attempts()
        if started < max_attempts:
            log.warning(
                "%s %s: %s; attempt %d of %d, resubmitting",
                phase,
                r.key,
                r.message,
                started,
                max_attempts,
            )
            return next(u for u in batch if u.key == r.key)
        return None
    retry = None
    if r.state == "failed" and r.failure_class == "timeout" and on_timeout:
        retry = on_timeout(next(u for u in batch if u.key == r.key))
    if retry is not None:
        log.warning(
            "%s %s: %s; resubmitting (%s)",
            phase,
            r.key,
            r.message,
            ", ".join(f"{k}={v}" for k, v in retry.flags),
        )
        return retry
    if r.state == "failed" and r.failure_class == "oom" and r.threads > 1:
        unit = next(u for u in batch if u.key == r.key)
        log.warning(
            "%s %s: out of memory with %d threads; retrying with %d",
            phase,
            r.key,
            r.threads,
            r.threads // 2,
        )
        return unit.with_threads(r.threads // 2)
    return None


def after_lost_batch(
    phase: str,
    batch: list[Unit],
    err: BaseException,
    ledger: Ledger,
    settings: Settings,
    results: dict[str, UnitResult],
    lost: dict[str, int],
) -> list[Unit]:
    """A batch whose worker died (or that failed outside its units): resubmit or give up."""
    reason = " ".join(str(err).split())[:300] or type(err).__name__
    again: list[Unit] = []
    final: list[UnitResult] = []
    for unit in batch:
        row = ledger.get(phase, unit.key)
        # The ledger counts starts (Dask re-runs a lost task itself); ``lost`` counts batches
        # that failed here, so an error before any start cannot loop forever.
        attempts = max(row.attempts if row is not None else 0, lost.get(unit.key, 0))
        if attempts < settings.max_attempts:
            log.warning(
                "%s %s: worker lost (%s); attempt %d of %d, resubmitting",
                phase,
                unit.key,
                type(err).__name__,
                attempts,
                settings.max_attempts,
            )
            again.append(unit)
        else:
            final.append(
                UnitResult(
                    phase=phase,
                    key=unit.key,
                    state="failed",
                    failure_class="infra",
                    message=attempts_exhausted(
                        phase, settings.max_attempts, attempts, f"{type(err).__name__}: {reason}"
                    ),
                    threads=unit.threads,
                )
            )
    if final:
        ledger.finish(
            phase,
            [
                UnitFinish(key=r.key, state="failed", failure_class="infra", message=r.message)
                for r in final
            ],
        )
        results.update({r.key: r for r in final})
    return again
