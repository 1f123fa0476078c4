"""The record of alarms in SQL, kept through database outages.

``AlarmRecord.update`` (called by the monitor loop, never waiting on the database) compares the
active conditions with the previous ones and queues every change in memory with its UTC time
and run; it returns the conditions just raised (for the notifications, which need no database).
A writer thread writes the queue in order with ``sync_alarms``: an alarm is raised and cleared
at the time of its change, with automatic logbook entries of that time. A write that fails
(PostgreSQL stopped, SQLite locked by another writer beyond its busy timeout) leaves the queue as
it was: the thread logs "database unavailable" once with the reason, tries again every
``retry_s``, and logs when the database is back and the queue is written. Meanwhile
``database_error`` says why, the monitor's next observation carries it, and the ``database``
condition is active (so its own raise and clear reach SQL afterwards with their times). The
queue holds at most ``MAX_PENDING`` changes; past that the oldest is dropped (logged), and the
next written change still raises and clears whatever differs from SQL.

Open alarms whose name starts with ``supervisor:`` belong to the process supervisor, which raises
and clears them itself: the record never touches them.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from daq.store.models import Alarm
from daq.store.runs import add_logbook
from daq.store.session import session_scope
from online.monitoring.alarms import Condition

log = logging.getLogger(__name__)

ALARM_AUTHOR = "alarms"
SUPERVISOR_PREFIX = "supervisor:"
"""Alarms of the process supervisor (daq.control.supervisor), never raised or cleared here."""
MAX_PENDING = 10_000
"""Changes kept in memory while the database is unavailable (a few MB)."""


def _is_supervisors(name: str) -> bool:
    return name.startswith(SUPERVISOR_PREFIX)


def sync_alarms(
    session: Session,
    active: list[Condition],
    run_number: int | None = None,
    now: datetime | None = None,
) -> tuple[list[Alarm], list[Alarm]]:
    """Raise alarms for new conditions, clear those gone, at ``now`` (UTC, default: now);
    returns (raised, cleared).

    An open alarm (not cleared) is identified by its condition name; each change gets an
    automatic logbook entry. Open ``supervisor:`` alarms are left alone.
    """
    now = now or datetime.now(UTC)
    open_alarms = {
        a.name: a
        for a in session.scalars(select(Alarm).where(Alarm.cleared_utc.is_(None)))
        if not _is_supervisors(a.name)
    }
    wanted = {c.name: c for c in active}
    raised, cleared = [], []
    for name, cond in wanted.items():
        if name in open_alarms:
            open_alarms[name].message = cond.message
            continue
        alarm = Alarm(name=name, severity=cond.severity, message=cond.message, raised_utc=now)
        session.add(alarm)
        raised.append(alarm)
        text = f"alarm raised: {cond.message}"
        add_logbook(session, ALARM_AUTHOR, text, run_number, automatic=True).time_utc = now
    for name, alarm in open_alarms.items():
        if name not in wanted:
            alarm.cleared_utc = now
            cleared.append(alarm)
            text = f"alarm cleared: {alarm.message}"
            add_logbook(session, ALARM_AUTHOR, text, run_number, automatic=True).time_utc = now
    session.flush()
    for alarm in raised:
        log.warning("alarm %s raised: %s", alarm.name, alarm.message)
    for alarm in cleared:
        log.info("alarm %s cleared", alarm.name)
    return raised, cleared


@dataclass
class Change:
    """The active conditions from ``time_utc`` on, in run ``run``."""

    time_utc: datetime
    active: list[Condition]
    run: int | None


def _reason(err: Exception) -> str:
    """The database's own words (the driver's error), on one line."""
    cause = getattr(err, "orig", None) or err
    return f"{type(cause).__name__}: {cause}".splitlines()[0]


class AlarmRecord:
    """Alarm changes queued in memory and written to SQL by a writer thread."""

    def __init__(self, engine: Engine, retry_s: float = 5.0) -> None:
        self.engine = engine
        self.retry_s = retry_s
        self.database_error = ""
        """Why the last write failed, with the time the outage began ("" while writes work)."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pending: list[Change] = []
        self._writing = 0
        self._dropped = 0
        self._active = self._open_alarms()
        self._thread = threading.Thread(target=self._write_loop, name="alarm-writer", daemon=True)
        self._thread.start()

    def _open_alarms(self) -> list[Condition]:
        """The open alarms in SQL (not the supervisor's), as the conditions last recorded."""
        try:
            with session_scope(self.engine, readonly=True) as session:
                rows = session.scalars(select(Alarm).where(Alarm.cleared_utc.is_(None))).all()
        except SQLAlchemyError as err:
            log.warning("open alarms unknown (database unavailable): %s", _reason(err))
            return []
        return sorted(
            (Condition(a.name, a.severity, a.message) for a in rows if not _is_supervisors(a.name)),
            key=lambda c: c.name,
        )

    @property
    def pending(self) -> int:
        """Changes not yet written."""
        with self._lock:
            return len(self._pending)

    def update(self, active: list[Condition], run: int | None, now: datetime) -> list[Condition]:
        """Queue a change if the active conditions differ from the last ones; returns the
        conditions raised by it."""
        if active == self._active:
            return []
        before = {c.name for c in self._active}
        raised = [c for c in active if c.name not in before]
        with self._lock:
            last = self._pending[-1] if len(self._pending) > self._writing else None
            if last is not None and [c.name for c in last.active] == [c.name for c in active]:
                last.active = active  # only messages changed: no new raise or clear
            else:
                self._pending.append(Change(now, active, run))
                if len(self._pending) > MAX_PENDING and self._writing == 0:
                    self._pending.pop(0)
                    self._dropped += 1
                    if self._dropped == 1:
                        log.error(
                            "more than %d alarm changes unwritten: dropping the oldest", MAX_PENDING
                        )
        self._active = active
        self._wake.set()
        return raised

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.retry_s if self.database_error else None)
            self._wake.clear()
            self._write()
        self._write()

    def _write(self) -> None:
        """Write the queued changes in one transaction; on failure they stay queued."""
        with self._lock:
            batch = list(self._pending)
            self._writing = len(batch)
        if not batch:
            return
        try:
            with session_scope(self.engine) as session:
                for change in batch:
                    sync_alarms(session, change.active, change.run, change.time_utc)
        except Exception as err:  # whatever the database does, the changes stay queued
            with self._lock:
                self._writing = 0
            if not self.database_error:
                since = datetime.now(UTC)
                log.error(
                    "database unavailable, alarm changes kept in memory: %s",
                    _reason(err),
                    exc_info=not isinstance(err, SQLAlchemyError),
                )
                self.database_error = (
                    f"database unavailable since {since:%Y-%m-%d %H:%M:%S} UTC: {_reason(err)}"
                )
            return
        with self._lock:
            del self._pending[: len(batch)]
            self._writing = 0
        if self.database_error:
            log.warning("database available again: %d alarm changes written", len(batch))
            self.database_error = ""

    def close(self, timeout_s: float = 60.0) -> None:
        """Stop the writer after one last attempt to write what is queued."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)
        if self.pending:
            log.error("%d alarm changes could not be written to the database", self.pending)
