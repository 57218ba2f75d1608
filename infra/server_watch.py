"""A run's watch on its Prefect server: when the server goes away, the run stops reporting to it.

A run's units never need the server: each Dask worker writes its units' sidecars and ledger
rows itself, and reports task runs to Prefect only as events, sent in the background.  But once
the server is gone Prefect's client makes every call of the run's process wait through its
retries (2 + 4 + 8 + 16 + 32 s: about 70 s for each artifact update and for the flow's final
state), and at exit its services wait, without end, to send the events and logs they hold
(measured with Prefect 3.9.1: ``docs/faults.md``).  So a run watches ``<url>/health``; after
:data:`MISSES` failed polls in a row it *goes offline*: no more retries of Prefect's client
(``client.max_retries`` 0), no more logs shipped, lsdr's artifacts skipped, Prefect's
connection warnings kept off the console (the run's log file still has them), and the process
ends without waiting for Prefect's queues once it has reported (:func:`exit_now`).  The ledger,
the sidecars and the run's log file are the record; the run prints :func:`lost_line`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from lsdr.infra.prefect_server import is_healthy

POLL_SECONDS = 2.0
"""Between two polls of ``/health`` (each waits at most as long for its answer)."""
MISSES = 2
"""Failed polls in a row that make the server lost (one may be a busy server's slow answer)."""
OFFLINE_NOISE = ("prefect.events", "prefect._internal.concurrency", "prefect.client")
"""Loggers whose records, once the server is lost, stay off the console (they say it again and
again: each event not sent, each reconnection); the run's log file keeps them."""

log = logging.getLogger("lsdr.server")


class ServerWatch:
    """Polls a Prefect server's health in a daemon thread; goes offline when it stops answering."""

    def __init__(self, url: str, poll: float = POLL_SECONDS) -> None:
        self.url, self.poll = url, poll
        self.lost_at: datetime | None = None
        self.dask_address: str | None = None
        """The run's Dask scheduler, whose workers go offline with the run's process."""
        self._settings: list[Any] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lsdr-server-watch", daemon=True)

    @property
    def lost(self) -> bool:
        """Whether the server was found gone (it stays lost for the rest of the run)."""
        return self.lost_at is not None

    def start(self) -> ServerWatch:
        """Start polling; this thread's Prefect settings are the first to go offline."""
        self.register_current()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling (the run is over)."""
        self._stop.set()

    def register_current(self) -> None:
        """Also take the calling thread's current Prefect settings offline when the server goes.

        Prefect's client reads its retries, and its log handler whether to ship, from the
        settings of the thread's context; a ``temporary_settings`` block has its own copy.
        """
        from prefect.context import SettingsContext

        context = SettingsContext.get()
        if context is None:
            return
        with self._lock:
            self._settings.append(context.settings)
            if self.lost:
                _offline(context.settings)

    def _run(self) -> None:
        misses = 0
        while not self._stop.wait(self.poll):
            misses = 0 if is_healthy(self.url, timeout=self.poll) else misses + 1
            if misses >= MISSES:
                self.go_offline()
                return

    def go_offline(self) -> None:
        """Stop reporting to the server: what the module docstring lists."""
        with self._lock:
            if self.lost:
                return
            self.lost_at = datetime.now(UTC)
            for settings in self._settings:
                _offline(settings)
        go_offline_here()
        log.warning("the Prefect server at %s went away; the run goes on without it", self.url)
        if self.dask_address is not None:
            _workers_offline(self.dask_address)


def go_offline_here() -> None:
    """Go offline in the calling process: its root settings, log shipping, console.

    A log record the API handler could not send is printed on stderr by Prefect's log worker
    (``--- Error logging to API ---``) only while ``logging.raiseExceptions`` is set.  Prefect's
    ``prefect._internal`` records (each event it could not send) have a stderr handler of their
    own, which never reaches the run's log file.
    """
    from prefect.context import SettingsContext

    context = SettingsContext.get()
    if context is not None:
        _offline(context.settings)
    logging.raiseExceptions = False
    for handler in logging.getLogger().handlers:
        if getattr(handler, "name", None) == "console":
            handler.addFilter(_offline_noise)
    for handler in logging.getLogger("prefect._internal").handlers:
        handler.addFilter(_offline_noise)


def _workers_offline(address: str) -> None:
    """Take the run's Dask workers offline too: they report their task runs to the server."""
    try:
        from distributed import Client

        with Client(address, timeout=10) as client:  # type: ignore[no-untyped-call]
            client.run(go_offline_here)
    except Exception as err:  # the units go on either way; only the console stays noisier
        log.warning("could not tell the Dask workers the Prefect server went away: %s", err)


def _offline(settings: Any) -> None:
    """Prefect settings that make no more retries and ship no more logs."""
    settings.client.max_retries = 0
    settings.logging.to_api.enabled = False


def _offline_noise(record: logging.LogRecord) -> bool:
    """False for Prefect's records about the server it cannot reach (console only)."""
    if record.name.startswith(OFFLINE_NOISE):
        return False
    error = record.exc_info[1] if record.exc_info else None
    return not (record.name.startswith("prefect") and _is_connection_error(error))


def _is_connection_error(error: BaseException | None) -> bool:
    """Whether ``error`` is (or was caused by) a failure to reach an HTTP server."""
    import httpx

    while error is not None:
        if isinstance(error, httpx.TransportError | ConnectionError):
            return True
        error = error.__cause__ or error.__context__
    return False


_current: ServerWatch | None = None


def watch(url: str) -> ServerWatch:
    """Start watching ``url`` for this process (one watch a process: a new one replaces it)."""
    global _current
    if _current is not None:
        _current.stop()
    _current = ServerWatch(url).start()
    return _current


def current() -> ServerWatch | None:
    """The watch a run of this process started, if any."""
    return _current


def server_lost() -> bool:
    """Whether this process's run found its Prefect server gone."""
    return _current is not None and _current.lost


def lost_line(release_dir: object) -> str | None:
    """The one line a run whose server went away prints: what it could not report, and the fix."""
    if _current is None or _current.lost_at is None:
        return None
    when = _current.lost_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"lsdr: the Prefect server {_current.url} went away at {when}: from then on this run's "
        "flow and task states, logs and artifacts were not reported to it (the units ran; "
        f"every one is in the ledger: lsdr status --release-dir {release_dir}); "
        f"'lsdr server up --release-dir {release_dir}' restarts it on the same port and database"
    )


def exit_now(code: int) -> None:
    """End a run whose server went away: flush what is ours, skip Prefect's waits at exit.

    Prefect's services would, at interpreter exit, wait to send every event and log they hold
    to a server that is gone (measured: more than 400 s for a four-unit run, and without end
    for a long one).  Everything the run owns (its cluster, its lock, its log) is closed by now.
    """
    if _current is not None:
        _current.stop()
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):  # a handler that cannot flush has nothing to lose
            handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
