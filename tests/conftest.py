"""Fixtures shared by the whole suite: a database URL on SQLite and on PostgreSQL."""

from __future__ import annotations

import functools

import psycopg
import pytest
from sqlalchemy import text

from daq.store.session import make_engine, upgrade_database

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_POSTGRES_TEST_LOCK = 0x6E75_7465  # advisory lock: one test at a time uses the shared database


@functools.cache
def _postgres_unavailable() -> str | None:
    """Why the PostgreSQL test server cannot be used, or None when it answers."""
    try:
        psycopg.connect(POSTGRES_URL.replace("+psycopg", ""), connect_timeout=2).close()
    except psycopg.Error as err:
        return f"PostgreSQL test server {POSTGRES_URL} does not answer: {err}".strip()
    return None


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """An empty database (no nudaq tables, no alembic_version): SQLite file or PostgreSQL.

    PostgreSQL tests hold an advisory lock while they run, so concurrent test sessions on
    the shared server wait for each other instead of clearing each other's tables.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'nudaq.sqlite'}"
        return
    reason = _postgres_unavailable()
    if reason:
        pytest.skip(reason)
    engine = make_engine(POSTGRES_URL)
    with engine.connect() as lock:
        lock.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _POSTGRES_TEST_LOCK})
        lock.commit()
        with engine.begin() as conn:  # every table, also of schemas newer or older than ours
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        try:
            yield POSTGRES_URL
        finally:
            lock.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _POSTGRES_TEST_LOCK})
            lock.commit()
    engine.dispose()


@pytest.fixture
def db_engine(db_url):
    """An engine on a database upgraded to the newest schema."""
    engine = make_engine(db_url)
    upgrade_database(engine)
    yield engine
    engine.dispose()
