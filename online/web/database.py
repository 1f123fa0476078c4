"""The web server's side of the database: a short wait, and an outage answered, not fatal.

The web server only reads and writes small things, so it never waits long for the database:
``web_engine`` bounds a lock wait (SQLite's busy timeout, PostgreSQL's ``lock_timeout``) and a
connection attempt (PostgreSQL's ``connect_timeout``) by ``web.db_timeout_s``. When the
database does not answer (down, unreachable, locked beyond that wait) every API route that
uses it answers 503 with ``{"error": "database unavailable", "detail": <the reason>}``, the
live status says so (``Status.database_ok``) and the pages show a red banner; nothing else
stops, and the next request after the database is back simply works (PostgreSQL connections
are checked before use, so a pool of dead ones is replaced).

SQLite in WAL mode lets readers read while another connection holds the write lock (``BEGIN
IMMEDIATE``), so there a lock makes only writes (logbook, acknowledgement, run quality)
answer 503.
"""

from __future__ import annotations

import logging
import math

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, event, exc

from daq.store.session import make_engine

log = logging.getLogger(__name__)

UNAVAILABLE = "database unavailable"
OUTAGE_ERRORS = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError)
"""What SQLAlchemy raises when the database cannot be used now (refused connection, lock
wait over, server gone, pool exhausted), as opposed to a wrong query."""
PG_MIN_CONNECT_TIMEOUT_S = 2
"""libpq's shortest connect_timeout (s)."""


def web_engine(url: str, timeout_s: float) -> Engine:
    """An engine on the system's database whose waits end after about ``timeout_s``."""
    engine = make_engine(url)
    wait_ms = int(timeout_s * 1000)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _busy_timeout(dbapi_connection, _record) -> None:  # after make_engine's 30 s
            dbapi_connection.execute(f"PRAGMA busy_timeout = {wait_ms}")

    elif engine.dialect.name == "postgresql":

        @event.listens_for(engine, "do_connect")
        def _timeouts(_dialect, _record, _args, params: dict) -> None:
            seconds = max(PG_MIN_CONNECT_TIMEOUT_S, math.ceil(timeout_s))
            params.setdefault("connect_timeout", seconds)
            params["options"] = f"{params.get('options', '')} -c lock_timeout={wait_ms}".strip()

    return engine


def outage_reason(err: Exception) -> str:
    """The first line of what the database driver said."""
    cause = getattr(err, "orig", None) or err
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]


async def database_unavailable(_request: Request, err: Exception) -> JSONResponse:
    """Exception handler: a database outage is a 503 with one clear reason."""
    reason = outage_reason(err)
    log.debug("%s: %s", UNAVAILABLE, reason)  # the live status logs when it goes and returns
    return JSONResponse(
        {"error": UNAVAILABLE, "detail": reason}, status_code=503, headers={"Retry-After": "5"}
    )
