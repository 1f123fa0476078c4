"""Alarms: the open and recently cleared ones with their conditions, and acknowledgement."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException

from daq.store.models import Alarm
from daq.store.runs import add_logbook
from daq.store.session import session_scope
from online.monitoring.alarms import condition_table
from online.web import queries
from online.web.deps import ConfigDep, EngineDep, LiveDep, Shifter
from online.web.models import AlarmOut, AlarmsOut, Condition

router = APIRouter()


@router.get("/api/alarms", response_model=AlarmsOut, tags=["alarms"])
def alarms(config: ConfigDep, engine: EngineDep) -> AlarmsOut:
    """Open alarms first, then recent cleared ones; the conditions and thresholds."""
    with session_scope(engine, readonly=True) as session:
        rows = queries.alarms(session)
    return AlarmsOut(
        alarms=rows,
        conditions=[
            Condition(name=n, meaning=m, threshold=t) for n, m, t in condition_table(config.alarms)
        ],
    )


@router.post("/api/alarms/{alarm_id}/ack", response_model=AlarmOut, tags=["alarms"])
def ack_alarm(alarm_id: int, shifter: Shifter, engine: EngineDep, live: LiveDep) -> AlarmOut:
    """Acknowledge an alarm (it stays shown until its condition clears)."""
    with session_scope(engine) as session:
        alarm = session.get(Alarm, alarm_id)
        if alarm is None:
            raise HTTPException(404, f"no alarm {alarm_id}")
        if alarm.acked_utc is None:
            alarm.acked_utc = datetime.now(UTC)
            alarm.acked_by = shifter.name
            add_logbook(
                session,
                shifter.name,
                f"alarm acknowledged: {alarm.message}",
                live.latest.run,
                automatic=True,
            )
        return AlarmOut.model_validate(alarm, from_attributes=True)
