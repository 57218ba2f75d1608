"""The unit ledger: every unit of every phase, its state, attempts, failure and cost.

Like qdo's task queues, but an index rather than the truth: the release's files and their
provenance sidecars are the truth, and :meth:`Ledger.rebuild` recreates the ledger from them.
SQLite in the release's state directory by default; any SQLAlchemy URL (PostgreSQL in
production) otherwise.  Writers are the flow (planning, cached units) and the workers (a
batch's start and end), each a single transaction, so the ledger costs two writes per batch.
Readers that must not write (``lsdr status``) open it with :meth:`Ledger.existing`, which
creates nothing.

Beside the units it keeps what the nightly increment needs (``docs/nightly.md``): the images an
increment has settled (:class:`SeenImageRow`), the increments themselves with the watermark of
the last successful one (:class:`IncrementRow`), and the options a chain last ran with
(:class:`ChainOptionsRow`).  These tables are created in an older ledger on first write, like
the retries table was; a read-only reader of an older ledger sees them empty.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import (
    BigInteger,
    Float,
    Integer,
    String,
    Text,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import NullPool

from lsdr.infra.processes import pid_alive
from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.layout import StateLayout


class UnitState(StrEnum):
    """A unit's state in the ledger (a ``str``: stored and compared as its value)."""

    PENDING = "pending"
    """Planned, not started (or re-queued)."""
    RUNNING = "running"
    """Started by a worker."""
    DONE = "done"
    """Finished with valid outputs (or found done)."""
    FAILED = "failed"
    """Finished with a failure class and a reason."""
    INTERRUPTED = "interrupted"
    """Started, then stopped by Ctrl-C or SIGTERM before it finished: to do, as pending."""


STATES = tuple(UnitState)
"""Every unit state, in the order a unit goes through them."""


class _Base(DeclarativeBase):
    pass


class UnitRow(_Base):
    """One unit (phase, key) as the ledger stores it."""

    __tablename__ = "units"

    phase: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True, default=UnitState.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    failure_class: Mapped[str | None] = mapped_column(String(16), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    wall_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    peak_mem_mb: Mapped[float | None] = mapped_column(Float, nullable=True)
    outputs: Mapped[str | None] = mapped_column(Text, nullable=True)
    fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    host: Mapped[str | None] = mapped_column(String(128), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    threads: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated: Mapped[str | None] = mapped_column(String(32), nullable=True)


class RetryRow(_Base):
    """One infrastructure retry of a unit: a start after a start that never finished.

    Dask reruns a task whose worker died without telling Prefect (the same task run, no
    retry state), and lsdr resubmits a unit whose command was killed: either way the unit
    starts again, and that restart is recorded here, append-only, with what was lost.
    """

    __tablename__ = "retries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    phase: Mapped[str] = mapped_column(String(32), index=True)
    key: Mapped[str] = mapped_column(String(400))
    attempt: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(String(128), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    at: Mapped[str] = mapped_column(String(32))


class SeenImageRow(_Base):
    """A CP image the nightly increment has looked at: settled, or pending a retry.

    The image is its ``ooi`` path relative to ``images/``; its stamp (size, mtime) is the one
    it had when it was settled, so an image replaced later under the same name is seen again.
    """

    __tablename__ = "nightly_images"

    image: Mapped[str] = mapped_column(String(400), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    """Nanoseconds: 64 bits (PostgreSQL's ``integer`` is 32)."""
    increment: Mapped[int] = mapped_column(Integer)
    """The increment that settled it (0: the release before the first increment)."""
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated: Mapped[str] = mapped_column(String(32))


class IncrementRow(_Base):
    """One nightly increment: when it ran, how it ended, what it found and redid."""

    __tablename__ = "increments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started: Mapped[str] = mapped_column(String(32))
    finished: Mapped[str | None] = mapped_column(String(32), nullable=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    new_images: Mapped[int] = mapped_column(Integer, default=0)
    bricks: Mapped[int] = mapped_column(Integer, default=0)
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)


class ChainOptionsRow(_Base):
    """The options a chain (``release``) last ran with, as JSON: what an increment repeats."""

    __tablename__ = "chain_options"

    chain: Mapped[str] = mapped_column(String(32), primary_key=True)
    options: Mapped[str] = mapped_column(Text)
    updated: Mapped[str] = mapped_column(String(32))


SETTLED_STATES = frozenset({"done", "dropped", "outside"})
"""Seen-image states that settle an image; any other (``failed``) leaves it pending."""
INCREMENT_SUCCEEDED = "succeeded"
"""The status of an increment that ran to its end: its watermark is the ledger's."""


@dataclass(frozen=True)
class SeenImage:
    """An image as the nightly increment last saw it (:class:`SeenImageRow`, detached)."""

    image: str
    state: str
    size: int
    mtime_ns: int
    increment: int
    reason: str | None = None

    @property
    def settled(self) -> bool:
        """Whether the image needs no more work (done, dropped by discovery, outside)."""
        return self.state in SETTLED_STATES


@dataclass(frozen=True)
class Increment:
    """One nightly increment as recorded (:class:`IncrementRow`, detached)."""

    id: int
    started: str
    finished: str | None
    status: str
    new_images: int
    bricks: int
    summary: str | None


@dataclass(frozen=True)
class InfraRetry:
    """A unit started again after an infrastructure failure (``lsdr status``)."""

    phase: str
    key: str
    attempt: int
    reason: str
    at: str


@dataclass(frozen=True)
class UnitFinish:
    """How a worker finished a unit: the ledger's view of a unit result."""

    key: str
    state: str
    fingerprint: str | None = None
    failure_class: str | None = None
    message: str | None = None
    wall_s: float | None = None
    peak_mem_mb: float | None = None
    outputs: tuple[str, ...] = ()
    threads: int | None = None


@dataclass(frozen=True)
class FailedUnit:
    """A failed unit with its one-line reason, for ``lsdr status``."""

    phase: str
    key: str
    failure_class: str
    message: str
    attempts: int


@dataclass
class PhaseCounts:
    """Units of a phase by state."""

    phase: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """All units of the phase."""
        return sum(self.counts.values())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class UnreadableLedgerError(InputFileError):
    """A SQLite ledger file is damaged: not a database, truncated, or failing its check."""

    def __init__(self, path: Path, reason: str) -> None:
        """The ledger's file and what SQLite says is wrong with it."""
        super().__init__(f"{path} is not a readable ledger ({reason})")
        self.path, self.reason = path, reason

    def with_fix(self, release_dir: Path) -> InputFileError:
        """The same, naming the fix: ``lsdr ledger rebuild`` on ``release_dir``."""
        return InputFileError(
            f"{self}: 'lsdr ledger rebuild --release-dir {release_dir}' moves it aside and "
            "rebuilds it from the provenance sidecars"
        )


def _sqlite_check(engine: Engine) -> str | None:
    """SQLite's ``quick_check`` of the whole file: None when sound, else its first complaint."""
    with engine.connect() as connection:
        found = [str(row[0]) for row in connection.exec_driver_sql("PRAGMA quick_check")]
    if found == ["ok"]:
        return None
    lines = [line for text in found for line in text.splitlines() if not line.startswith("***")]
    return lines[0] if lines else "it fails SQLite's quick_check"


def move_aside(path: Path) -> Path:
    """Rename a damaged SQLite ledger (and its ``-wal``/``-shm``) to ``<name>.corrupt-<UTC>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("-wal", "-shm"):
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            extra.rename(aside.with_name(aside.name + suffix))
    path.rename(aside)
    return aside


def default_url(state_dir: Path) -> str:
    """The default ledger: ``<state>/ledger.sqlite``."""
    return f"sqlite:///{StateLayout(state_dir).ledger_db}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def _read_only_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # Any write now fails ("attempt to write a readonly database"); reads wait for writers.
    cursor.execute("PRAGMA query_only=ON")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def _sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL; None for any other database."""
    return Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None


_ENGINES: dict[str, Engine] = {}


def _engine_key(url: str, read_only: bool) -> str:
    return f"{os.getpid()}:{'ro:' if read_only else ''}{url}"


def _engine(url: str, read_only: bool = False) -> Engine:
    """One engine per URL, mode and process (workers reuse theirs across batches).

    Read-only creates nothing: no directory, no database file, no table.  For SQLite it opens
    the existing file with ``mode=rw`` and ``PRAGMA query_only``, not ``mode=ro``: on a WAL
    database a ``mode=ro`` reader leaves ``-wal``/``-shm`` files behind, while the last
    ``mode=rw`` connection to close removes them, so the directory is left as it was found.
    """
    key = _engine_key(url, read_only)
    engine = _ENGINES.get(key)
    if engine is None:
        path = _sqlite_path(url)
        if read_only and path is not None:
            uri = f"file:{quote(str(path.absolute()))}?mode=rw"
            engine = create_engine(
                "sqlite://",
                creator=lambda: sqlite3.connect(uri, uri=True, timeout=60),
                poolclass=NullPool,  # each read closes its connection: nothing stays open
            )
            event.listen(engine, "connect", _read_only_pragmas)
        elif read_only:
            options = {"postgresql_readonly": True} if url.startswith("postgresql") else {}
            engine = create_engine(url, pool_pre_ping=True, execution_options=options)
        elif path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": 60})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True)
        if not read_only:
            _Base.metadata.create_all(engine)
        _ENGINES[key] = engine
    return engine


def _chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Ledger:
    """The ledger at a database URL; cheap to create, safe to pickle (it holds only the URL)."""

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        """The ledger at ``url``, created on first use; ``read_only`` creates and writes nothing."""
        self.url = url
        self.read_only = read_only

    @classmethod
    def existing(cls, url: str, *, read_only: bool = True) -> Ledger | None:
        """The ledger at ``url`` if one was created there, else None; creates nothing itself.

        For commands that report on a release (``lsdr status``) or repair it: where nothing has
        run there is no ledger, and looking must not make one.  An unreadable database is an
        :class:`InputFileError` naming it (its password hidden); a damaged SQLite file (not a
        database, truncated, failing ``PRAGMA quick_check``) an :class:`UnreadableLedgerError`.
        """
        path = _sqlite_path(url)
        if path is not None and not path.is_file():
            return None
        try:
            engine = _engine(url, read_only=True)
            damage = _sqlite_check(engine) if path is not None else None
            if path is not None and damage is not None:
                raise UnreadableLedgerError(path, damage)
            if not inspect(engine).has_table(UnitRow.__tablename__):
                return None
        except SQLAlchemyError as err:
            reason = str(getattr(err, "orig", None) or err).splitlines()[0]
            if path is not None:
                raise UnreadableLedgerError(path, reason) from None
            where = make_url(url).render_as_string(hide_password=True)
            raise InputFileError(f"ledger {where} cannot be read: {reason}") from None
        return cls(url, read_only=read_only)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine of this process."""
        return _engine(self.url, self.read_only)

    def close(self) -> None:
        """Close this process's connections to the ledger (before deleting or moving it)."""
        for read_only in (False, True):
            engine = _ENGINES.pop(_engine_key(self.url, read_only), None)
            if engine is not None:
                engine.dispose()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the URL and mode only (engines do not cross processes)."""
        return {"url": self.url, "read_only": self.read_only}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild from the URL."""
        self.url = state["url"]
        self.read_only = bool(state.get("read_only", False))

    # -- planning and running ---------------------------------------------------------------
    def plan(self, phase: str, keys: Iterable[str]) -> int:
        """Add the phase's units that are not in the ledger yet, as pending; return how many."""
        keys = list(dict.fromkeys(keys))
        with Session(self.engine) as session, session.begin():
            known: set[str] = set()
            for chunk in _chunks(keys):
                known.update(
                    session.scalars(
                        select(UnitRow.key).where(UnitRow.phase == phase, UnitRow.key.in_(chunk))
                    )
                )
            new = [k for k in keys if k not in known]
            now = _now()
            session.add_all(
                UnitRow(phase=phase, key=k, state=UnitState.PENDING, attempts=0, updated=now)
                for k in new
            )
        return len(new)

    def start(self, phase: str, keys: Sequence[str], *, threads: int | None = None) -> None:
        """A worker starts these units: state running, one more attempt, this host and pid.

        A unit still ``running`` (its previous start never finished: its worker was lost) or
        ``failed`` as ``infra`` is starting again after an infrastructure failure: that retry
        is recorded (:meth:`infra_retries`).
        """
        host, pid, now = socket.gethostname(), os.getpid(), _now()
        with Session(self.engine) as session, session.begin():
            for chunk in _chunks(keys):
                query = select(UnitRow).where(UnitRow.phase == phase, UnitRow.key.in_(chunk))
                for row in session.scalars(query):
                    lost = row.state == UnitState.RUNNING
                    if lost or (row.state == UnitState.FAILED and row.failure_class == "infra"):
                        reason = (
                            f"its start {row.attempts} on {row.host}:{row.pid} never finished "
                            "(worker lost)"
                            if lost
                            else f"start {row.attempts} failed: {row.message or 'infra'}"
                        )
                        session.add(
                            RetryRow(
                                phase=phase,
                                key=row.key,
                                attempt=row.attempts + 1,
                                reason=reason[:2000],
                                host=host,
                                pid=pid,
                                at=now,
                            )
                        )
                session.execute(
                    update(UnitRow)
                    .where(UnitRow.phase == phase, UnitRow.key.in_(chunk))
                    .values(
                        state=UnitState.RUNNING,
                        attempts=UnitRow.attempts + 1,
                        host=host,
                        pid=pid,
                        threads=threads,
                        updated=now,
                    )
                )

    def finish(self, phase: str, results: Sequence[UnitFinish]) -> None:
        """Record how units ended (done or failed), in one transaction."""
        now = _now()
        with Session(self.engine) as session, session.begin():
            for r in results:
                row = session.get(UnitRow, (phase, r.key))
                if row is None:
                    row = UnitRow(phase=phase, key=r.key, attempts=1)
                    session.add(row)
                row.state = r.state
                row.failure_class = r.failure_class
                row.message = r.message
                row.fingerprint = r.fingerprint
                if r.wall_s is not None:
                    row.wall_s = r.wall_s
                if r.peak_mem_mb is not None:
                    row.peak_mem_mb = r.peak_mem_mb
                if r.threads is not None:
                    row.threads = r.threads
                row.outputs = json.dumps(list(r.outputs))
                row.updated = now

    def mark_cached(self, phase: str, results: Sequence[UnitFinish]) -> None:
        """Units found done on disk: recorded done without counting an attempt."""
        self.finish(phase, results)

    # -- reading ------------------------------------------------------------------------------
    def counts(self, phase: str | None = None) -> list[PhaseCounts]:
        """Units by phase and state (the ``qdo list`` view)."""
        query = select(UnitRow.phase, UnitRow.state, func.count()).group_by(
            UnitRow.phase, UnitRow.state
        )
        if phase is not None:
            query = query.where(UnitRow.phase == phase)
        result: dict[str, PhaseCounts] = {}
        with Session(self.engine) as session:
            for ph, state, n in session.execute(query):
                result.setdefault(ph, PhaseCounts(ph)).counts[state] = int(n)
        return [result[p] for p in sorted(result)]

    def failed(self, phase: str | None = None) -> list[FailedUnit]:
        """Failed units with their class and one-line reason."""
        query = select(UnitRow).where(UnitRow.state == UnitState.FAILED)
        if phase is not None:
            query = query.where(UnitRow.phase == phase)
        with Session(self.engine) as session:
            return [
                FailedUnit(
                    r.phase,
                    r.key,
                    r.failure_class or "science",
                    (r.message or "").splitlines()[0] if r.message else "",
                    r.attempts,
                )
                for r in session.scalars(query.order_by(UnitRow.phase, UnitRow.key))
            ]

    def infra_retries(self, phase: str | None = None) -> list[InfraRetry]:
        """Every infrastructure retry recorded, oldest first."""
        if not inspect(self.engine).has_table(RetryRow.__tablename__):
            return []  # a ledger from before retries were recorded, opened read-only
        query = select(RetryRow).order_by(RetryRow.id)
        if phase is not None:
            query = query.where(RetryRow.phase == phase)
        with Session(self.engine) as session:
            return [
                InfraRetry(r.phase, r.key, r.attempt, r.reason, r.at)
                for r in session.scalars(query)
            ]

    def get(self, phase: str, key: str) -> UnitRow | None:
        """One unit's row (detached), or None."""
        with Session(self.engine, expire_on_commit=False) as session:
            row = session.get(UnitRow, (phase, key))
            if row is not None:
                session.expunge(row)
            return row

    def rows_of(self, phase: str, keys: Sequence[str]) -> dict[str, UnitRow]:
        """The rows of these units of a phase by key (detached; a unit not planned: absent)."""
        found: dict[str, UnitRow] = {}
        with Session(self.engine, expire_on_commit=False) as session:
            for chunk in _chunks(keys):
                query = select(UnitRow).where(UnitRow.phase == phase, UnitRow.key.in_(chunk))
                for row in session.scalars(query):
                    session.expunge(row)
                    found[row.key] = row
        return found

    def rows(self, phase: str) -> list[UnitRow]:
        """Every unit of a phase (detached rows)."""
        with Session(self.engine, expire_on_commit=False) as session:
            rows = list(session.scalars(select(UnitRow).where(UnitRow.phase == phase)))
            for r in rows:
                session.expunge(r)
            return rows

    # -- repairs ------------------------------------------------------------------------------
    def forget(self, phase: str, keys: Sequence[str]) -> int:
        """Remove units that no longer exist (a bad list file's unit, once the list reads)."""
        with Session(self.engine) as session, session.begin():
            n = 0
            for chunk in _chunks(list(keys)):
                result = session.execute(
                    delete(UnitRow).where(UnitRow.phase == phase, UnitRow.key.in_(chunk))
                )
                n += int(getattr(result, "rowcount", 0) or 0)
            return n

    def retry(self, phase: str, *, failure_class: str | None = None) -> int:
        """Re-queue the phase's failed units (after a fix) as pending; return how many.

        Their attempts start again at 0: ``max_attempts`` counts the starts since the last fix
        (the infrastructure retries before it stay in :meth:`infra_retries`).
        """
        query = update(UnitRow).where(UnitRow.phase == phase, UnitRow.state == UnitState.FAILED)
        if failure_class is not None:
            query = query.where(UnitRow.failure_class == failure_class)
        with Session(self.engine) as session, session.begin():
            values = {"state": UnitState.PENDING, "attempts": 0, "updated": _now()}
            result = session.execute(query.values(**values))
            return int(getattr(result, "rowcount", 0) or 0)

    def interrupt(self, phase: str, keys: Sequence[str], reason: str) -> list[tuple[str, int]]:
        """Mark these units ``interrupted`` where still ``running``; their workers' (host, pid).

        Only a row still running changes: a unit whose worker finished it first stays as its
        worker recorded it, and one never started stays pending.
        """
        workers: list[tuple[str, int]] = []
        with Session(self.engine) as session, session.begin():
            for chunk in _chunks(list(keys)):
                query = select(UnitRow).where(
                    UnitRow.phase == phase,
                    UnitRow.key.in_(chunk),
                    UnitRow.state == UnitState.RUNNING,
                )
                for row in session.scalars(query):
                    row.state = UnitState.INTERRUPTED
                    row.message = reason
                    row.updated = _now()
                    if row.host is not None and row.pid is not None:
                        workers.append((row.host, row.pid))
        return workers

    def recover(self, *, phase: str | None = None, all_hosts: bool = False) -> list[str]:
        """Mark running units whose worker process is gone as pending; return their keys.

        A unit is recovered only when its worker is known dead: on this host, its pid no
        longer exists.  Units running on other hosts are left alone unless ``all_hosts``
        (use it when no flow of this release is running).  Safe to run at any time.
        """
        host = socket.gethostname()
        query = select(UnitRow).where(UnitRow.state == UnitState.RUNNING)
        if phase is not None:
            query = query.where(UnitRow.phase == phase)
        recovered: list[str] = []
        with Session(self.engine) as session, session.begin():
            for row in session.scalars(query):
                dead = (
                    all_hosts if row.host != host else (row.pid is None or not pid_alive(row.pid))
                )
                if dead:
                    row.state = UnitState.PENDING
                    row.message = f"recovered: worker {row.host}:{row.pid} died"
                    row.updated = _now()
                    recovered.append(f"{row.phase}:{row.key}")
        return recovered

    def replace_phase(
        self, phase: str, rows: Sequence[UnitFinish], attempts: dict[str, int]
    ) -> None:
        """Replace a phase's rows, in one transaction."""
        self.replace_phases({phase: rows}, attempts)

    def replace_phases(
        self, phases: dict[str, Sequence[UnitFinish]], attempts: dict[str, int]
    ) -> None:
        """Replace these phases' rows, in one transaction (a rebuild from the sidecars)."""
        with Session(self.engine) as session, session.begin():
            for phase, rows in phases.items():
                self._replace(session, phase, rows, attempts)

    @staticmethod
    def _replace(
        session: Session, phase: str, rows: Sequence[UnitFinish], attempts: dict[str, int]
    ) -> None:
        """Delete a phase's rows and add ``rows`` in the session's transaction."""
        session.query(UnitRow).filter(UnitRow.phase == phase).delete()
        for r in rows:
            session.add(
                UnitRow(
                    phase=phase,
                    key=r.key,
                    state=r.state,
                    attempts=attempts.get(r.key, 1),
                    failure_class=r.failure_class,
                    message=r.message,
                    wall_s=r.wall_s,
                    peak_mem_mb=r.peak_mem_mb,
                    outputs=json.dumps(list(r.outputs)),
                    fingerprint=r.fingerprint,
                    threads=r.threads,
                    updated=_now(),
                )
            )

    # -- the nightly increment: seen images, increments, the watermark ----------------------------
    def _has(self, table: str) -> bool:
        """Whether a table exists (a ledger older than it, opened read-only, lacks it)."""
        return not self.read_only or inspect(self.engine).has_table(table)

    def seen_images(self) -> dict[str, SeenImage]:
        """Every image the nightly increment has recorded, by its path under ``images/``."""
        if not self._has(SeenImageRow.__tablename__):
            return {}
        with Session(self.engine) as session:
            return {
                r.image: SeenImage(r.image, r.state, r.size, r.mtime_ns, r.increment, r.reason)
                for r in session.scalars(select(SeenImageRow))
            }

    def record_images(self, images: Sequence[SeenImage]) -> None:
        """Record (insert or replace) images as seen, in one transaction."""
        now = _now()
        with Session(self.engine) as session, session.begin():
            for im in images:
                row = session.get(SeenImageRow, im.image)
                if row is None:
                    row = SeenImageRow(image=im.image)
                    session.add(row)
                row.state, row.size, row.mtime_ns = im.state, im.size, im.mtime_ns
                row.increment, row.reason, row.updated = im.increment, im.reason, now

    def start_increment(self) -> int:
        """Record an increment as started (status ``running``); its id."""
        with Session(self.engine) as session, session.begin():
            row = IncrementRow(started=_now(), status="running", new_images=0, bricks=0)
            session.add(row)
            session.flush()
            return int(row.id)

    def finish_increment(
        self, increment: int, status: str, *, new_images: int, bricks: int, summary: str
    ) -> None:
        """Record how an increment ended; ``succeeded`` moves the watermark to now."""
        with Session(self.engine) as session, session.begin():
            row = session.get(IncrementRow, increment)
            if row is None:
                raise KeyError(f"no increment {increment} in the ledger")
            row.finished, row.status = _now(), status
            row.new_images, row.bricks, row.summary = new_images, bricks, summary

    def increments(self) -> list[Increment]:
        """Every increment recorded, oldest first."""
        if not self._has(IncrementRow.__tablename__):
            return []
        with Session(self.engine) as session:
            return [
                Increment(r.id, r.started, r.finished, r.status, r.new_images, r.bricks, r.summary)
                for r in session.scalars(select(IncrementRow).order_by(IncrementRow.id))
            ]

    def watermark(self) -> str | None:
        """When the last successful increment finished (UTC, ISO 8601), or None: none has."""
        done = [i for i in self.increments() if i.status == INCREMENT_SUCCEEDED and i.finished]
        return done[-1].finished if done else None

    def record_chain_options(self, chain: str, options: str) -> None:
        """Record the options (JSON) a chain ran with, replacing the last ones."""
        with Session(self.engine) as session, session.begin():
            row = session.get(ChainOptionsRow, chain)
            if row is None:
                row = ChainOptionsRow(chain=chain)
                session.add(row)
            row.options, row.updated = options, _now()

    def chain_options(self, chain: str) -> str | None:
        """The options (JSON) the chain last ran with, or None: it has not run."""
        if not self._has(ChainOptionsRow.__tablename__):
            return None
        with Session(self.engine) as session:
            row = session.get(ChainOptionsRow, chain)
            return None if row is None else row.options

    def attempts(self, phases: Iterable[str] | None = None) -> dict[tuple[str, str], int]:
        """Starts of every unit (of these phases), by (phase, key): what a run added to."""
        query = select(UnitRow.phase, UnitRow.key, UnitRow.attempts)
        if phases is not None:
            query = query.where(UnitRow.phase.in_(list(phases)))
        with Session(self.engine) as session:
            return {(p, k): int(a) for p, k, a in session.execute(query)}
