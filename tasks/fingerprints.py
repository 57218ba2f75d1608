"""A unit's fingerprint: a hash of what it is and of what it reads.

The fingerprint hashes a unit's input files' *contents* (``tasks/digests.py``: a size/mtime/
ctime check first, a content hash only when that differs), the table rows it reads, its options
and the engine version.  Its identity is the same without the files' contents: a sidecar of
another identity is stale without hashing anything.  No Prefect here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lsdr.tasks.digests import CONTENT, HEADER, FileDigest, digest_files, relative
from lsdr.tasks.unit import Unit


def identity(unit: Unit, engine_version: str, root: str | Path | None = None) -> str:
    """Hash of what the unit is, without its files' contents.

    Phase, key, engine, options, the rows it reads and the names of the files it reads: a
    sidecar with another identity is stale without hashing anything (new options, a new input).
    Paths under ``root`` (the release) count relative to it, in options too.
    """
    doc = {
        "phase": unit.phase,
        "key": unit.key,
        "engine": engine_version,
        "options": [[k, v] for k, v in unit.options],
        "rows": [list(r) for r in unit.read_rows],
        "inputs": [relative(p, root) for p in unit.inputs],
        "headers": [relative(p, root) for p in unit.headers],
    }
    text = json.dumps(doc, sort_keys=True, default=str)
    if root is not None:
        text = text.replace(json.dumps(str(root).rstrip("/") + "/")[1:-1], "")
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class InputDigests:
    """A unit's fingerprint over its inputs' contents, and the digests it took.

    ``hashed``: how many files had to be hashed (the rest were vouched for by their stamps).
    """

    fingerprint: str
    records: tuple[FileDigest, ...]
    hashed: int


def input_digests(
    unit: Unit,
    engine_version: str,
    known: Mapping[str, FileDigest] | None = None,
    root: str | Path | None = None,
) -> InputDigests:
    """The unit's fingerprint: its identity and the content digest of every file it reads.

    ``known``: digests recorded before (a sidecar's, the planner's), reused for files whose
    stamp is unchanged.  ``root``: the release, whose paths count relative to it.
    """
    known = {**{d.path: d for d in unit.known}, **(known or {})}
    content, n_content = digest_files(unit.inputs, CONTENT, known)
    headers, n_headers = digest_files(unit.headers, HEADER, known)
    doc = {
        "identity": identity(unit, engine_version, root),
        "inputs": [[relative(d.path, root), d.digest] for d in content],
        "headers": [[relative(d.path, root), d.digest] for d in headers],
    }
    fp = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    return InputDigests(fp, (*content, *headers), n_content + n_headers)


def fingerprint(unit: Unit, engine_version: str, root: str | Path | None = None) -> str:
    """The unit's fingerprint (see :func:`input_digests`), hashing what this process has not."""
    return input_digests(unit, engine_version, root=root).fingerprint
