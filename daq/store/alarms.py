"""Alarms the DAQ raises itself, beside the monitor's conditions: the supervisor's.

The monitor (online.monitoring) raises and clears the conditions it evaluates every second.
Some alarms come from the processes that see the fault first and may outlive the monitor: a
process that died and was restarted, a crash loop that stops the system. Their names start
with SUPERVISOR_PREFIX; the monitor leaves them alone, and they are raised and cleared here,
each change with an automatic logbook entry.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from daq.store.models import Alarm
from daq.store.runs import add_logbook

SUPERVISOR_PREFIX = "supervisor:"
AUTHOR = "supervisor"


def raise_alarm(
    session: Session, name: str, severity: str, message: str, run_number: int | None = None
) -> Alarm:
    """Raise (or, if open, update) the supervisor's alarm ``name`` (with SUPERVISOR_PREFIX)."""
    if not name.startswith(SUPERVISOR_PREFIX):
        raise ValueError(f"alarm {name!r}: the supervisor's alarms start with {SUPERVISOR_PREFIX}")
    alarm = session.scalar(select(Alarm).where(Alarm.name == name, Alarm.cleared_utc.is_(None)))
    if alarm is None:
        alarm = Alarm(name=name, severity=severity, message=message, raised_utc=datetime.now(UTC))
        session.add(alarm)
        add_logbook(session, AUTHOR, f"alarm raised: {message}", run_number, automatic=True)
    else:
        alarm.severity, alarm.message = severity, message
    session.flush()
    return alarm


def clear_alarm(session: Session, name: str, run_number: int | None = None) -> None:
    """Clear the supervisor's open alarm ``name``, if there is one."""
    alarm = session.scalar(select(Alarm).where(Alarm.name == name, Alarm.cleared_utc.is_(None)))
    if alarm is not None:
        alarm.cleared_utc = datetime.now(UTC)
        add_logbook(session, AUTHOR, f"alarm cleared: {alarm.message}", run_number, automatic=True)
        session.flush()
