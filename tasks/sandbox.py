"""The sandbox a unit runs in: an address-space limit, and the memory it peaked at.

A unit over its memory limit raises a real ``MemoryError`` (class ``oom``) instead of the
node's OOM killer taking the whole worker.  No Prefect here.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _vm_size_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@contextmanager
def memory_limit(limit_mb: int | None) -> Iterator[None]:
    """Limit this process's address space to its current size plus ``limit_mb`` for a unit.

    Allocations beyond it raise a real ``MemoryError`` (class ``oom``) instead of the node's
    OOM killer taking the whole worker.  The limit applies to the worker process, so it is
    meant for workers running one unit at a time (``threads_per_worker = 1``).
    """
    if limit_mb is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_vm_size_bytes() + limit_mb * 1024 * 1024, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
