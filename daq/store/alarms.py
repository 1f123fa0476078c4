"""Alarms the DAQ raises itself, beside the monitor's conditions: the supervisor's.

The monitor (online.monitoring) raises and clears the conditions it evaluates every second.
Some alarms come from the processes that see the fault first and may outlive the monitor: a
process that died and was restarted, a crash loop that stops the system. Their names start
with SUPERVISOR_PREFIX; the monitor leaves them alone, and they are raised and cleared here,
each change with an automatic logbook entry. They are queued writes of run control
(daq.store.durable, kind SUPERVISOR_ALARM): raised and cleared at their own time also while
the database is away.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from daq.store.models import Alarm
from daq.store.runs import add_logbook

SUPERVISOR_PREFIX = "supervisor:"
AUTHOR = "supervisor"
SUPERVISOR_ALARM = "supervisor-alarm"
"""The kind of a queued raise or clear of a supervisor's alarm."""


def alarm_change(
    name: str, severity: str = "", message: str = "", run_number: int | None = None
) -> dict:
    """The data of a SUPERVISOR_ALARM write: raise ``name`` now (with a severity), or clear
    it (without)."""
    return {
        "name": name,
        "severity": severity,
        "message": message,
        "run": run_number,
        "time_utc": datetime.now(UTC).isoformat(),
    }


def apply_alarm_change(session: Session, data: dict) -> None:
    """The applier of SUPERVISOR_ALARM writes."""
    at = datetime.fromisoformat(data["time_utc"])
    if data["severity"]:
        raise_alarm(session, data["name"], data["severity"], data["message"], data["run"], at)
    else:
        clear_alarm(session, data["name"], data["run"], at)


def raise_alarm(
    session: Session,
    name: str,
    severity: str,
    message: str,
    run_number: int | None = None,
    at: datetime | None = None,
) -> Alarm:
    """Raise (or, if open, update) the supervisor's alarm ``name`` (with SUPERVISOR_PREFIX) at
    ``at`` (default now)."""
    if not name.startswith(SUPERVISOR_PREFIX):
        raise ValueError(f"alarm {name!r}: the supervisor's alarms start with {SUPERVISOR_PREFIX}")
    at = at or datetime.now(UTC)
    alarm = session.scalar(select(Alarm).where(Alarm.name == name, Alarm.cleared_utc.is_(None)))
    if alarm is None:
        alarm = Alarm(name=name, severity=severity, message=message, raised_utc=at)
        session.add(alarm)
        add_logbook(
            session, AUTHOR, f"alarm raised: {message}", run_number, automatic=True, time_utc=at
        )
    else:
        alarm.severity, alarm.message = severity, message
    session.flush()
    return alarm


def clear_alarm(
    session: Session, name: str, run_number: int | None = None, at: datetime | None = None
) -> None:
    """Clear the supervisor's open alarm ``name``, if there is one, at ``at`` (default now)."""
    at = at or datetime.now(UTC)
    alarm = session.scalar(select(Alarm).where(Alarm.name == name, Alarm.cleared_utc.is_(None)))
    if alarm is not None:
        alarm.cleared_utc = at
        add_logbook(
            session,
            AUTHOR,
            f"alarm cleared: {alarm.message}",
            run_number,
            automatic=True,
            time_utc=at,
        )
        session.flush()
