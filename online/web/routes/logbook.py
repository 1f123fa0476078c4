"""The electronic logbook: searching entries and writing them as the logged-in shifter."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from daq.store.runs import add_logbook
from daq.store.session import session_scope
from online.web import queries
from online.web.deps import EngineDep, LiveDep, Shifter
from online.web.models import LogbookEntryOut, LogbookIn

router = APIRouter()


@router.get("/api/logbook", response_model=list[LogbookEntryOut], tags=["logbook"])
def logbook(
    engine: EngineDep,
    q: Annotated[str, Query(max_length=200, description="text or author contains")] = "",
    run: int | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> list[LogbookEntryOut]:
    """Logbook entries, newest first, optionally searched."""
    with session_scope(engine, readonly=True) as session:
        return queries.logbook(session, q, run, limit)


@router.post("/api/logbook", response_model=LogbookEntryOut, tags=["logbook"])
def write_logbook(
    entry: LogbookIn, shifter: Shifter, engine: EngineDep, live: LiveDep
) -> LogbookEntryOut:
    """Write an entry as the logged-in shifter (default run: the current one)."""
    run_number = entry.run_number if entry.run_number is not None else live.latest.run
    with session_scope(engine) as session:
        row = add_logbook(session, shifter.name, entry.text, run_number)
        return LogbookEntryOut.model_validate(row, from_attributes=True)
