"""Engines, sessions and schema upgrades for the nudaq database.

Several processes (builder, run control, slow control, web, analysis) write the same
database at once. On SQLite that needs WAL journaling (readers never block the writer),
a busy timeout (a writer waits for the lock instead of failing: 30 s, or what ``writer``
is given, ``database.busy_timeout_s`` for the processes' queued writes), foreign keys on,
and explicit transactions: nudaq emits ``BEGIN`` itself (pysqlite's implicit transaction
handling is switched off) and ``session_scope`` opens ``BEGIN IMMEDIATE``, so a
transaction that reads and then writes holds the write lock from its start and cannot be
refused halfway. PostgreSQL is reached through ``postgresql+psycopg://user@host/db``.

The schema is owned by the Alembic migrations in ``online/db/migrations`` (shipped inside
the package, no alembic.ini). ``upgrade_database`` brings any database to the newest
revision and is safe to call from every process at start. To add a revision after changing
``daq.store.models``::

    from alembic import command
    from online.db.session import alembic_config, make_engine
    with make_engine(url).begin() as conn:
        command.revision(alembic_config(conn), "what changed", autogenerate=True)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Dialect, Engine, Table, create_engine, event, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
_IMMEDIATE = "nudaq_sqlite_immediate"
_BUSY_TIMEOUT = "nudaq_sqlite_busy_timeout_ms"
_MIGRATION_LOCK_KEY = 0x6E75_6471  # PostgreSQL advisory lock id serialising upgrades ("nudq")


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # nudaq emits BEGIN itself (see _sqlite_on_begin)
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    options = conn.get_execution_options()
    timeout_ms = options.get(_BUSY_TIMEOUT, SQLITE_BUSY_TIMEOUT_MS)
    info = conn.connection.info  # kept with the pooled connection
    if info.get(_BUSY_TIMEOUT, SQLITE_BUSY_TIMEOUT_MS) != timeout_ms:
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {timeout_ms}")
        info[_BUSY_TIMEOUT] = timeout_ms
    conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(_IMMEDIATE) else "BEGIN")


def make_engine(url: str) -> Engine:
    """Engine for a database URL; SQLite files get WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed)
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def upsert(dialect: Dialect, table: Table) -> sqlite.Insert | postgresql.Insert:
    """The dialect's INSERT into ``table``, which takes ``on_conflict_do_update`` (SQLite and
    PostgreSQL spell it alike)."""
    return {"sqlite": sqlite.insert, "postgresql": postgresql.insert}[dialect.name](table)


def writer(engine: Engine, busy_timeout_s: float | None = None) -> Engine:
    """The engine whose transactions take SQLite's write lock at BEGIN (same pool), waiting
    at most ``busy_timeout_s`` for it (SQLite; default SQLITE_BUSY_TIMEOUT_MS)."""
    options: dict = {_IMMEDIATE: True}
    if busy_timeout_s is not None:
        options[_BUSY_TIMEOUT] = max(1, round(1000 * busy_timeout_s))
    return engine.execution_options(**options)


@contextmanager
def session_scope(
    engine: Engine, *, readonly: bool = False, busy_timeout_s: float | None = None
) -> Iterator[Session]:
    """A session in one transaction: committed at exit, rolled back on an exception.

    ``readonly=True`` does not take SQLite's write lock and always rolls back (for queries);
    otherwise the lock is waited for at most ``busy_timeout_s`` (see ``writer``).
    Objects stay usable after the scope (no expiry on commit).
    """
    bind = engine if readonly else writer(engine, busy_timeout_s)
    with Session(bind, expire_on_commit=False) as session:
        if readonly:
            yield session
            return
        with session.begin():
            yield session


def alembic_config(connection: Connection) -> AlembicConfig:
    """Alembic configuration running nudaq's migrations on an open connection."""
    # alembic is imported where it is used: ~0.2 s of start-up for processes that never
    # upgrade (the builder, whose start-up every replay waits for)
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade_database(engine_or_url: Engine | str) -> None:
    """Bring the database to the newest schema revision (idempotent, safe in parallel).

    The whole upgrade is one transaction that first takes a lock (SQLite: BEGIN IMMEDIATE;
    PostgreSQL: an advisory lock), so processes starting together upgrade one after the
    other and the later ones find nothing to do.
    """
    from alembic import command

    owned = isinstance(engine_or_url, str)
    engine = make_engine(engine_or_url) if owned else engine_or_url
    try:
        with writer(engine).begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            command.upgrade(alembic_config(conn), "head")
    finally:
        if owned:
            engine.dispose()
