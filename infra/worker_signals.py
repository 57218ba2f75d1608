"""A Dask worker preload: the workers of a local cluster ignore SIGINT and SIGTERM.

A terminal sends Ctrl-C to its whole foreground process group, the local cluster's worker
processes with it, and SLURM sends SIGTERM to every process of a job step.  A worker that died
of either would leave its unit half written; lsdr's own process decides what stops and stops
the workers itself (``flows/interrupt.py``, ``lsdr/interrupted.py``).  Set as the
``distributed.worker.preload`` of the workers ``infra/profiles/local.py`` starts.
"""

from __future__ import annotations

from typing import Any

from lsdr.infra.processes import ignore_stop_signals


def dask_setup(_worker: Any) -> None:
    """Dask's preload hook, run in the worker's main thread as it starts."""
    ignore_stop_signals()
