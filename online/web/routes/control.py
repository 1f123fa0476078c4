"""Run control from the web: start and stop a run, each logged in the logbook."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from daq.core.errors import RunControlError
from daq.store.runs import add_logbook
from daq.store.session import session_scope
from online.web.auth import ShifterSession
from online.web.database import OUTAGE_ERRORS, UNAVAILABLE, outage_reason
from online.web.deps import EngineDep, LiveDep, Shifter
from online.web.models import RunControlReply, RunStartIn
from online.web.status import LiveStatus

log = logging.getLogger(__name__)

router = APIRouter()


def log_request(engine: Engine, shifter: str, command: str, run: int | None) -> None:
    """The logbook entry of a command sent from the web."""
    with session_scope(engine) as session:
        add_logbook(session, shifter, f"{command} requested from the web", run, True)


async def control(
    live: LiveStatus, engine: Engine, command: str, shifter: ShifterSession, **fields
) -> JSONResponse:
    """Send ``command`` to run control: 503 if it does not answer, 409 if it refuses;
    on success log it in the logbook (a database outage does not undo the command: the reply
    says the entry is missing) and refresh the live status."""
    if not live.latest.reachable:
        reply = RunControlReply(ok=False, error="run control does not answer")
        return JSONResponse(reply.model_dump(), status_code=503)
    current = live.latest.run
    try:
        answer = await run_in_threadpool(live.command, command, **fields)
    except RunControlError as err:
        log.warning("run control refused %s by %s: %s", command, shifter.name, err)
        reply = RunControlReply(ok=False, error=str(err))
        return JSONResponse(reply.model_dump(), status_code=409)
    reply = RunControlReply(ok=True, run=answer.get("run"), summary=answer.get("summary") or None)
    number = reply.run if command == "start" else current
    try:
        await run_in_threadpool(log_request, engine, shifter.name, command, number)
    except OUTAGE_ERRORS as err:
        reply.error = f"done, but not written in the logbook: {UNAVAILABLE} ({outage_reason(err)})"
    await run_in_threadpool(live.refresh)
    return JSONResponse(reply.model_dump())


@router.post("/api/run/start", response_model=RunControlReply, tags=["run control"])
async def run_start(
    body: RunStartIn, shifter: Shifter, live: LiveDep, engine: EngineDep
) -> JSONResponse:
    """Begin a new run (409 with run control's reason if it refuses)."""
    return await control(live, engine, "start", shifter, comment=body.comment)


@router.post("/api/run/stop", response_model=RunControlReply, tags=["run control"])
async def run_stop(shifter: Shifter, live: LiveDep, engine: EngineDep) -> JSONResponse:
    """End the current run; the reply carries the run summary."""
    return await control(live, engine, "stop", shifter)
