"""Provenance sidecars: what a unit read and wrote, and whether it is done.

A unit's provenance sidecar (``state/provenance/<phase>/<hash>.json``) records its fingerprint
(``tasks/fingerprints.py``), the digest of every file it read and wrote, the wall time and
memory.  A unit is done when its sidecar matches the current fingerprint and every recorded
output still holds the bytes it wrote: the on-disk release is the truth, the ledger is an index
of it (rebuilt from the sidecars by :func:`rebuild_ledger`).  A touched file with the same bytes
changes nothing, and a rerun unit whose outputs come out byte-identical leaves its dependants
done (early cutoff).  No Prefect here.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lsdr.infra.ledger import UnitFinish
from lsdr.survey.core.fileio import write_text_atomic
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.digests import (
    CONTENT,
    FileDigest,
    absolute,
    by_path,
    digest_file,
    digest_files,
    stat_stamp,
)
from lsdr.tasks.failures import NO_BLIND_RETRY
from lsdr.tasks.fingerprints import identity, input_digests
from lsdr.tasks.unit import Unit, UnitResult

SIDECAR_VERSION = 2
"""2: inputs and outputs recorded by content digest (1: by size and mtime; such a unit reruns)."""


def sidecar_path(layout: ReleaseLayout, phase: str, key: str) -> Path:
    """Where a unit's provenance sidecar lives (the key itself is stored inside)."""
    digest = hashlib.sha1(f"{phase}\0{key}".encode()).hexdigest()[:24]
    return layout.provenance(phase, digest)


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """A sidecar's content, or None when missing or unreadable (then the unit reruns)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class Settled:
    """What the sidecar settles for a unit: its result (None: it must run) and the unit to run.

    The unit to run carries the digests the check already took, for its worker to reuse.
    """

    result: UnitResult | None
    unit: Unit


def settle(layout: ReleaseLayout, unit: Unit, engine_version: str) -> Settled:
    """Whether a unit is done (cached) or failed for these very inputs, from its sidecar.

    No sidecar (or one of another identity or version): the unit runs, nothing is hashed here
    (its worker hashes what it reads).  Otherwise the inputs whose stamps changed are hashed;
    the same fingerprint and outputs holding the bytes they were written with mean done.  A
    done unit whose files were touched gets its sidecar's stamps refreshed, so the next check
    hashes nothing.
    """
    path = sidecar_path(layout, unit.phase, unit.key)
    data = read_sidecar(path)
    if (
        data is None
        or data.get("version") != SIDECAR_VERSION
        or data.get("identity") != identity(unit, engine_version, layout.root)
    ):
        return Settled(None, unit)
    root = layout.root
    known_inputs = by_path(data.get("inputs", []), root)
    digests = input_digests(unit, engine_version, known_inputs, root)
    planned = replace(unit, known=digests.records)
    if data.get("fingerprint") != digests.fingerprint:
        return Settled(None, planned)
    failed = _failed(data, unit, digests.fingerprint)
    if failed is not None:
        return Settled(failed, planned)
    if data.get("state") != "done":
        return Settled(None, planned)
    outputs = _intact_outputs(data.get("outputs", []), root)
    if outputs is None:
        return Settled(None, planned)
    records, hashed_outputs = outputs
    touched = False
    if digests.hashed + hashed_outputs:
        # Refresh the stamps, so the next check hashes nothing.  The files were *touched* when
        # a trusted stamp changed; an untrusted one (written just before it was last hashed)
        # is only re-confirmed.
        recorded = [*known_inputs.values(), *by_path(data.get("outputs", []), root).values()]
        touched = any(r.stamp is not None and r.stamp != stat_stamp(r.path) for r in recorded)
        data["inputs"] = [d.as_list(root) for d in digests.records]
        data["outputs"] = [d.as_list(root) for d in records]
        write_text_atomic(path, json.dumps(data, indent=1, default=str))
    reason = CACHED_SAME_BYTES if touched else CACHED_UNCHANGED
    return Settled(_cached(data, unit, digests.fingerprint, reason, root), planned)


CACHED_UNCHANGED = "inputs and outputs unchanged since the unit ran"
CACHED_SAME_BYTES = "files touched since the unit ran, but their contents are the same"
"""Why a unit was found done (the reason shown in Prefect and the summary)."""
FORCED_RERUN = "forced rerun: recomputed on request although it was done"
"""The message of a done unit that ran only because it was forced (its ledger row's too)."""


def _intact_outputs(items: Sequence[Any], root: Path) -> tuple[list[FileDigest], int] | None:
    """The recorded outputs, re-checked (None: one is missing or holds other bytes)."""
    records, hashed = [], 0
    for item in items:
        recorded = FileDigest.from_list(item, root) if isinstance(item, list) else None
        if recorded is None:
            return None
        now, did = digest_file(recorded.path, CONTENT, recorded, trusted=False)
        if now.digest != recorded.digest:
            return None
        records.append(now if now.stamp is not None else recorded)
        hashed += did
    return records, hashed


def _cached(data: dict[str, Any], unit: Unit, fp: str, reason: str, root: Path) -> UnitResult:
    return UnitResult(
        phase=unit.phase,
        key=unit.key,
        state="cached",
        fingerprint=fp,
        message=reason,
        wall_s=float(data.get("wall_s", 0.0)),
        peak_mem_mb=float(data.get("peak_mem_mb", 0.0)),
        outputs=tuple(absolute(str(s[0]), root) for s in data.get("outputs", [])),
        summary=data.get("summary", {}),
        threads=int(data.get("threads", 1)),
    )


def done_result(layout: ReleaseLayout, unit: Unit, engine_version: str) -> UnitResult | None:
    """The cached result of a unit whose sidecar says done for its current inputs, or None."""
    result = settle(layout, unit, engine_version).result
    return result if result is not None and result.state == "cached" else None


def _failed(data: dict[str, Any] | None, unit: Unit, fp: str) -> UnitResult | None:
    """A science (or usage) failure recorded for these very inputs: not retried blindly.

    Changing an input (replacing a bad file) changes the fingerprint and the unit runs again;
    ``lsdr retry`` removes the record after a fix elsewhere (code, configuration).
    """
    if data is None or data.get("state") != "failed" or data.get("fingerprint") != fp:
        return None
    if data.get("failure_class") not in NO_BLIND_RETRY:
        return None
    return UnitResult(
        phase=unit.phase,
        key=unit.key,
        state="failed",
        fingerprint=fp,
        failure_class=str(data.get("failure_class")),
        message=f"{data.get('message')} (failed before with the same inputs; "
        f"`lsdr retry --phase {unit.phase}` after a fix)",
        threads=unit.threads,
    )


def last_failure(layout: ReleaseLayout, phase: str, key: str) -> str | None:
    """The message of a unit's last recorded outcome when it failed (its sidecar), else None.

    Whatever the fingerprint: a downstream phase leaves out what its upstream unit last failed
    to make, until that unit runs again and succeeds.
    """
    data = read_sidecar(sidecar_path(layout, phase, key))
    if data is None or data.get("state") != "failed":
        return None
    return str(data.get("message") or data.get("failure_class") or "failed")


def write_sidecar(
    layout: ReleaseLayout,
    result: UnitResult,
    traceback_text: str = "",
    *,
    unit_identity: str = "",
    inputs: Sequence[FileDigest] = (),
    engine: str = "",
    engine_version: str = "",
    options: Sequence[tuple[str, Any]] = (),
    started: float | None = None,
    forced: bool = False,
) -> Path:
    """Record a finished (done or failed) unit's provenance, atomically.

    ``inputs``: the digests of what it read (as fingerprinted before it ran); its outputs are
    hashed here, by the process that wrote them, with their fresh stamps trusted.  ``engine``:
    the engine that ran it (its reference) and that engine's version.  ``options``: the
    unit's options (what its products depend on: a brick's grid), kept so a later run can
    ask what a unit was made with; ``started``: when it started (``finished`` is now);
    ``forced``: it ran, although done, because it was forced.
    """
    outputs, _ = digest_files(result.outputs, CONTENT, trusted=True)
    doc = {
        "version": SIDECAR_VERSION,
        "phase": result.phase,
        "key": result.key,
        "state": result.state,
        "identity": unit_identity,
        "engine": engine,
        "engine_version": engine_version,
        "fingerprint": result.fingerprint,
        "failure_class": result.failure_class,
        "message": result.message,
        "wall_s": round(result.wall_s, 4),
        "peak_mem_mb": round(result.peak_mem_mb, 1),
        "threads": result.threads,
        "inputs": [d.as_list(layout.root) for d in inputs],
        "outputs": [d.as_list(layout.root) for d in outputs],
        "summary": dict(result.summary),
        "options": {name: value for name, value in options},
        "forced": forced,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": started,
        "finished": time.time(),
    }
    if traceback_text:
        doc["traceback"] = traceback_text
    path = sidecar_path(layout, result.phase, result.key)
    return write_text_atomic(path, json.dumps(doc, indent=1, default=str))


def amend_outputs(layout: ReleaseLayout, phase: str, key: str, paths: Sequence[Path]) -> bool:
    """Re-stamp files a later phase rewrote in place in a done unit's sidecar.

    The bright-neighbour step updates the tractor phase's maskbits image, catalogue and
    checksum file of a brick, as legacypipe's post-processing does; without this the tractor
    unit would look unfinished and a rerun would remake the brick.  Only outputs the sidecar
    already lists are re-stamped; returns False when there is no done sidecar to amend.
    """
    path = sidecar_path(layout, phase, key)
    data = read_sidecar(path)
    if data is None or data.get("state") != "done":
        return False
    root = layout.root
    wanted = {str(p) for p in paths}
    data["outputs"] = [
        digest_file(name, CONTENT, trusted=True)[0].as_list(root) if name in wanted else item
        for item in data.get("outputs", [])
        for name in [absolute(str(item[0]), root)]
    ]
    write_text_atomic(path, json.dumps(data, indent=1, default=str))
    return True


def iter_sidecars(layout: ReleaseLayout) -> Iterator[dict[str, Any]]:
    """Every readable sidecar of the release (for ``lsdr ledger rebuild``)."""
    for path in layout.provenance_records():
        data = read_sidecar(path)
        if data is not None and "phase" in data and "key" in data:
            yield data


def rebuild_ledger(layout: ReleaseLayout, ledger: Any) -> dict[str, int]:
    """Recreate the ledger's rows from the release's provenance sidecars; units per phase.

    A sidecar knows a unit's last state, failure, cost and outputs, not how many times it was
    started, so attempts restart at one.
    """
    by_phase: dict[str, list[UnitFinish]] = {}
    for doc in iter_sidecars(layout):
        state = "failed" if doc.get("state") == "failed" else "done"
        by_phase.setdefault(str(doc["phase"]), []).append(
            UnitFinish(
                key=str(doc["key"]),
                state=state,
                fingerprint=doc.get("fingerprint"),
                failure_class=doc.get("failure_class"),
                message=doc.get("message"),
                wall_s=doc.get("wall_s"),
                peak_mem_mb=doc.get("peak_mem_mb"),
                outputs=tuple(absolute(str(s[0]), layout.root) for s in doc.get("outputs", [])),
                threads=doc.get("threads"),
            )
        )
    ledger.replace_phases(by_phase, {})  # one transaction: a crash leaves the old rows
    return {phase: len(rows) for phase, rows in by_phase.items()}
