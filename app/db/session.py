"""Engines and sessions. SQLite (the embedded default) runs in WAL mode with
synchronous=FULL, foreign keys on, and every transaction BEGIN IMMEDIATE, so concurrent
writers queue on the lock instead of failing on a stale snapshot; PostgreSQL (several
replicas) runs as configured. A commit returns only once the row is durable: that is when
an event is acknowledged."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

ROOT = Path(__file__).resolve().parents[2]


class DatabaseError(RuntimeError):
    """The database cannot be used as it is; the message says what to run."""


def alembic_config(url: str) -> Config:
    """Alembic's config for `url` (migrations/ of this checkout)."""
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def make_engine(url: str, immediate: bool = True, **kwargs: Any) -> Engine:
    """An engine for `url`; SQLite files get their folder, WAL and (`immediate`) BEGIN
    IMMEDIATE transactions."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **kwargs)
    if u.database and u.database != ":memory:":
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                           **kwargs)

    @event.listens_for(engine, "connect")
    def _connect(dbapi: Any, _record: Any) -> None:
        dbapi.isolation_level = None          # we issue BEGIN ourselves
        cur = dbapi.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON",
                       "busy_timeout=30000"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class WriterLock:
    """One SQLite writer at a time across threads and processes: a thread lock, then an
    exclusive flock on `<database>-writer.lock`. Writers queue in the kernel instead of
    in SQLite's busy handler, which sleeps up to 100 ms between tries (with several
    worker processes that made a slider post's p99 over a second)."""

    def __init__(self, path: Path | None) -> None:
        self.thread = threading.Lock()
        self.path = path

    def __enter__(self) -> None:
        self.thread.acquire()
        self.fd = None
        if self.path is not None:
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(self.fd, fcntl.LOCK_EX)
            except BaseException:
                if self.fd is not None:
                    os.close(self.fd)
                self.thread.release()
                raise

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)              # closing drops the flock
        self.thread.release()


class Database:
    """The engines and session factories of one database URL: `read()` for reads,
    `write()` for a transaction that writes (on SQLite one writer at a time, queued on a
    `WriterLock` rather than on SQLite's sleeping busy handler)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = make_url(url).get_backend_name() == "sqlite"
        if self.sqlite:
            self.engine = make_engine(url, immediate=True)
            self.read_engine = make_engine(url, immediate=False)
        else:
            self.engine = make_engine(url, pool_size=10, max_overflow=30)
            self.read_engine = self.engine
        self._writes = sessionmaker(self.engine, expire_on_commit=False)
        self._reads = sessionmaker(self.read_engine, expire_on_commit=False)
        database = make_url(url).database
        self._lock: AbstractContextManager[Any] = nullcontext()
        if self.sqlite:
            self._lock = WriterLock(Path(f"{database}-writer.lock")
                                    if database and database != ":memory:" else None)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; rolled back and closed after."""
        with self._reads() as s:
            yield s

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose block must end in `commit()`; rolled back if it raises."""
        with self._lock, self._writes() as s:
            try:
                yield s
            except BaseException:
                s.rollback()
                raise

    def revision(self) -> str | None:
        with self.engine.connect() as conn:
            rev = MigrationContext.configure(conn).get_current_revision()
            conn.rollback()
        return rev

    def check_migrated(self) -> None:
        """DatabaseError unless the schema is at the code's head revision."""
        head = ScriptDirectory.from_config(alembic_config(self.url)).get_current_head()
        try:
            current = self.revision()
        except Exception as exc:  # noqa: BLE001 - any driver error means "cannot use it"
            raise DatabaseError(f"cannot open the database {self.safe_url}: {exc}") from exc
        if current != head:
            raise DatabaseError(
                f"the database {self.safe_url} is at revision {current or 'none'}, the code "
                f"needs {head}: run `alembic upgrade head` (make demo does)")

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()
