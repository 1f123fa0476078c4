"""Runs: the run list and marking a run's quality (good or bad, with a reason)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from daq.core.errors import RunControlError
from daq.store.runs import add_logbook, set_quality
from daq.store.session import session_scope
from online.web import queries
from online.web.deps import EngineDep, Shifter
from online.web.models import QualityIn, RunOut

router = APIRouter()


@router.get("/api/runs", response_model=list[RunOut], tags=["runs"])
def runs(engine: EngineDep) -> list[RunOut]:
    """Runs, newest first; ``in_analysis`` marks those the live analysis contains."""
    with session_scope(engine, readonly=True) as session:
        return queries.runs(session)


@router.post("/api/runs/{number}/quality", response_model=RunOut, tags=["runs"])
def run_quality(number: int, body: QualityIn, shifter: Shifter, engine: EngineDep) -> RunOut:
    """Mark a run good or bad (with a reason); analyses use good runs only by default."""
    with session_scope(engine) as session:
        try:
            set_quality(session, number, body.quality, body.reason)
        except RunControlError as err:
            raise HTTPException(404, str(err)) from None
        add_logbook(
            session,
            shifter.name,
            f"run {number} marked {body.quality}: {body.reason}".rstrip(": "),
            number,
            automatic=True,
        )
    with session_scope(engine, readonly=True) as session:
        return queries.runs(session, number=number)[0]
