"""The alarm record in SQL: raise, clear, the supervisor's alarms, and a database outage."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from datetime import UTC, datetime

import pytest
import zmq
from sqlalchemy import event, select

from daq.control.runcontrol import request
from daq.core.config import Config
from daq.store.models import Alarm, LogbookEntry
from daq.store.session import make_engine, session_scope, upgrade_database
from online.monitoring.alarms import Condition
from online.monitoring.monitor import Monitor
from online.monitoring.record import sync_alarms
from tests.servers import serving_run_control, wait_for


def utc(stamp: datetime) -> datetime:
    """A stored time as aware UTC (SQLite gives it back naive)."""
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def test_sync_raises_once_clears_and_logs(db_engine):
    hv = Condition("hv_low", "critical", "HPGe HV 2000 V < 2500 V")
    ln2 = Condition("ln2_low", "warning", "LN2 level 10 % < 20 %")
    with session_scope(db_engine) as session:
        raised, cleared = sync_alarms(session, [hv, ln2], run_number=3)
    assert [a.name for a in raised] == ["hv_low", "ln2_low"] and cleared == []
    with session_scope(db_engine) as session:
        raised, cleared = sync_alarms(session, [hv], run_number=3)
    assert raised == [] and [a.name for a in cleared] == ["ln2_low"]
    with session_scope(db_engine) as session:
        raised, _ = sync_alarms(session, [hv, ln2], run_number=3)  # ln2 low again: a new alarm
    assert [a.name for a in raised] == ["ln2_low"]
    with session_scope(db_engine, readonly=True) as session:
        alarms = session.scalars(select(Alarm).order_by(Alarm.id)).all()
        entries = session.scalars(select(LogbookEntry).order_by(LogbookEntry.id)).all()
    assert [(a.name, a.cleared_utc is None) for a in alarms] == [
        ("hv_low", True),
        ("ln2_low", False),
        ("ln2_low", True),
    ]
    assert [e.text.split(":")[0] for e in entries] == [
        "alarm raised",
        "alarm raised",
        "alarm cleared",
        "alarm raised",
    ]
    assert all(e.automatic and e.run_number == 3 for e in entries)


def test_sync_leaves_the_supervisors_alarms_alone(db_engine):
    """Open supervisor: alarms are the supervisor's to clear: sync neither clears nor rewrites
    them, even with no active condition, nor raises a second one."""
    raised_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with session_scope(db_engine) as session:
        for name in ("supervisor:restart:readout-acv", "supervisor:crash_loop"):
            session.add(Alarm(name=name, severity="critical", message=name, raised_utc=raised_at))
        sync_alarms(session, [Condition("hv_low", "critical", "HPGe HV 0 V < 2500 V")])
    with session_scope(db_engine) as session:
        raised, cleared = sync_alarms(session, [])
    assert raised == [] and [a.name for a in cleared] == ["hv_low"]
    with session_scope(db_engine, readonly=True) as session:
        alarms = {a.name: a for a in session.scalars(select(Alarm))}
        texts = session.scalars(select(LogbookEntry.text)).all()
    assert alarms["hv_low"].cleared_utc is not None
    for name in ("supervisor:restart:readout-acv", "supervisor:crash_loop"):
        assert alarms[name].cleared_utc is None and alarms[name].message == name
        assert utc(alarms[name].raised_utc) == raised_at
    assert not any("supervisor" in t for t in texts)


def test_sync_writes_the_given_times(db_engine):
    """Raised and cleared at the times of the changes, not of the write; the logbook too."""
    up, down = datetime(2026, 1, 1, 3, 0, 0, tzinfo=UTC), datetime(2026, 1, 1, 3, 5, 0, tzinfo=UTC)
    ln2 = Condition("ln2_low", "warning", "LN2 level 10 % < 20 %")
    with session_scope(db_engine) as session:
        sync_alarms(session, [ln2], 4, now=up)
        sync_alarms(session, [], 4, now=down)
    with session_scope(db_engine, readonly=True) as session:
        (alarm,) = session.scalars(select(Alarm)).all()
        entries = session.scalars(select(LogbookEntry).order_by(LogbookEntry.id)).all()
    assert (utc(alarm.raised_utc), utc(alarm.cleared_utc)) == (up, down)
    assert [utc(e.time_utc) for e in entries] == [up, down]


BUSY_TIMEOUT_MS = 500
"""The monitor's SQLite busy timeout in the outage test (the default is 30 s)."""


@pytest.fixture
def quick_sqlite(tmp_path):
    """(path, engine) of an SQLite database whose busy timeout is BUSY_TIMEOUT_MS."""
    path = tmp_path / "nudaq.sqlite"
    engine = make_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _short_busy_timeout(dbapi_connection, _record):
        dbapi_connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    upgrade_database(engine)
    yield path, engine
    engine.dispose()


@pytest.mark.faults
def test_the_monitor_rides_through_a_locked_database(
    quick_sqlite, data_dir, webhook_server, caplog
):
    """Another writer holds SQLite's lock (BEGIN IMMEDIATE) far beyond the monitor's busy
    timeout. The monitor keeps evaluating: a silent data horizon is raised and cleared during
    the outage; it logs "database unavailable" once, the critical `database` condition is
    active and notified by webhook; when the lock goes it logs that the database is back and
    writes every change, each with its own time."""
    caplog.set_level(logging.INFO, logger="online.monitoring")
    path, engine = quick_sqlite
    config = Config()
    config.alarms.silent_stream_s = 0.5
    config.alarms.webhook.url = webhook_server.url
    config.alarms.notify_retry_s = 0.1
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(config.endpoint("monitor", data_dir))
    horizon = [1000]

    def step() -> tuple[datetime, list[str], datetime]:
        snap = {"time": time.time(), "state": "running", "run": run, "horizon_ns": horizon[0]}
        pub.send_string(json.dumps(snap))
        time.sleep(0.1)
        before = datetime.now(UTC)
        names = [c.name for c in monitor.step()]
        return before, names, datetime.now(UTC)

    with serving_run_control(engine, data_dir):
        run = request(config, data_dir, "start")["run"]
        monitor = Monitor(config, data_dir, engine, db_retry_s=0.1)
        try:
            horizon[0] += 1
            assert step()[1] == []
            locker = sqlite3.connect(path, isolation_level=None)
            locker.execute("BEGIN IMMEDIATE")
            locked_at = datetime.now(UTC)
            # the horizon stops: silent:horizon raised while the database is locked
            while "silent:horizon" not in (seen := step())[1]:
                pass
            raised_between = (seen[0], seen[2])
            # the write of that change fails after the busy timeout: `database` is active
            while "database" not in (seen := step())[1]:
                pass
            # the horizon moves again: silent:horizon cleared, still locked
            horizon[0] += 1
            seen = step()
            assert seen[1] == ["database"]
            cleared_between = (seen[0], seen[2])
            steps_while_locked = 0
            while steps_while_locked < 5:  # the monitor goes on evaluating
                horizon[0] += 1
                assert step()[1] == ["database"]
                steps_while_locked += 1
            with session_scope(engine, readonly=True) as session:  # WAL: readers still read
                assert session.scalars(select(Alarm)).all() == []
            wait_for(lambda: len(webhook_server.requests) >= 2, what="the notices")
            locker.execute("ROLLBACK")
            released_at = datetime.now(UTC)
            locker.close()
            while "database" in step()[1]:
                horizon[0] += 1
            wait_for(lambda: monitor.record.pending == 0, what="the changes to be written")
        finally:
            monitor.close()
            pub.close()
    with session_scope(engine, readonly=True) as session:
        alarms = {a.name: a for a in session.scalars(select(Alarm))}
        entries = session.scalars(select(LogbookEntry).where(LogbookEntry.automatic)).all()
    assert set(alarms) == {"silent:horizon", "database"}
    silent, database = alarms["silent:horizon"], alarms["database"]
    assert raised_between[0] <= utc(silent.raised_utc) <= raised_between[1]
    assert cleared_between[0] <= utc(silent.cleared_utc) <= cleared_between[1]
    assert utc(silent.cleared_utc) < released_at
    assert locked_at < utc(database.raised_utc) < released_at < utc(database.cleared_utc)
    assert database.severity == "critical"
    assert "database is locked" in database.message
    alarm_entries = sorted(
        (utc(e.time_utc), e.text.split(":")[0]) for e in entries if e.text.startswith("alarm")
    )
    assert alarm_entries == sorted(
        [
            (utc(silent.raised_utc), "alarm raised"),
            (utc(silent.cleared_utc), "alarm cleared"),
            (utc(database.raised_utc), "alarm raised"),
            (utc(database.cleared_utc), "alarm cleared"),
        ]
    )
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("database unavailable") for m in messages) == 1
    assert sum(m.startswith("database available again") for m in messages) == 1
    notified = webhook_server.bodies()
    assert [(b["name"], b["run"]) for b in notified] == [("silent:horizon", run), ("database", run)]
    assert notified[1]["message"] == database.message
