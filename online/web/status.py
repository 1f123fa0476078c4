"""The live state of a running system as the web server sees it, refreshed every second.

Two background threads feed it, so that a database outage never holds up the live view:

- the live thread asks run control for its status (``daq.control.runcontrol.request``) and
  reads the builder's monitor snapshots directly from their PUB endpoint (so rates keep
  coming while run control is busy with a transition); it also says hello on the transition
  channel, so run control lists the web server among its processes;
- the SQL thread brings the schema up to date once, then reads the open alarms and the
  newest reactor power reading, and notes when the database last answered or why not
  (``online.web.database``).

``compose_status`` joins the newest of both into one ``Status``, every part with the time it
is from, and the live thread keeps a rate history for the trends page.

Truth about staleness: the builder publishes a snapshot every second, running or idle, so a
snapshot older than ``web.stale_after_s`` means the builder (or the way to it) is gone and
the status says ``stale``. Whether alarms are current depends on the monitor process: the
web takes it as up when run control answers and lists ``monitor`` among its connected
processes (the monitor says hello on the transition channel, like every process); when run
control does not answer, the monitor is not listed, or the database cannot be read, the
alarm state is unknown (``alarms_known`` false, with ``alarms_note`` saying why).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import zmq
from sqlalchemy import Engine, select

from daq.control.observer import SnapshotSubscriber
from daq.control.runcontrol import request
from daq.control.transitions import ControlClient
from daq.core.config import Config
from daq.core.errors import NudaqError
from daq.core.records import DATA_STREAM_NAMES
from daq.store.models import Alarm
from daq.store.readings import newest_reading
from daq.store.session import session_scope, upgrade_database
from online.web.database import OUTAGE_ERRORS, UNAVAILABLE, outage_reason
from online.web.models import AlarmOut, Series, Status, StreamStatus

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0
SNAPSHOT_WAIT_S = 0.2
"""Longest wait for a builder snapshot at a time, so a stop is seen soon (s)."""
STATUS_TIMEOUT_S = 1.0
RATE_HISTORY = 3600
"""Rate samples kept for the trends page (one per poll)."""
POWER_QUANTITY = "power_MW"
"""The slow-control quantity of the reactor thermal power (MW)."""
MONITOR_PROCESS = "monitor"
"""The name the monitor process says hello with on the transition channel."""
NOT_READ = "not read yet"


@dataclass(frozen=True)
class SqlView:
    """What the live status reads from SQL, and whether the last read worked."""

    ok: bool = False
    error: str = NOT_READ
    read_utc: datetime | None = None
    alarms: list[AlarmOut] = field(default_factory=list)
    power_MW: float | None = None
    power_utc: datetime | None = None


def read_sql(session) -> SqlView:
    """The open alarms (newest first) and the newest reactor power reading."""
    rows = session.scalars(
        select(Alarm).where(Alarm.cleared_utc.is_(None)).order_by(Alarm.raised_utc.desc())
    )
    alarms = [AlarmOut.model_validate(a, from_attributes=True) for a in rows]
    power_MW, power_utc = newest_reading(session, POWER_QUANTITY) or (None, None)
    return SqlView(
        ok=True,
        error="",
        read_utc=datetime.now(UTC),
        alarms=alarms,
        power_MW=power_MW,
        power_utc=power_utc,
    )


def _alarms_note(rc: dict | None, monitor_up: bool, sql: SqlView) -> str:
    if rc is None:
        return "run control does not answer, so the monitor cannot be seen"
    if not monitor_up:
        return "the monitor is not connected to run control"
    if not sql.ok:
        return f"{UNAVAILABLE}: {sql.error}"
    return ""


def compose_status(
    now: datetime,
    rc: dict | None,
    rc_utc: datetime | None,
    snapshot: dict,
    snapshot_utc: datetime | None,
    sql: SqlView,
    stale_after_s: float,
) -> Status:
    """The overview at ``now`` from run control's last answer (None if it did not answer,
    ``rc_utc`` when it last did), the newest builder snapshot (taken at ``snapshot_utc``) and
    the last SQL read."""
    answered = rc or {}
    mon = snapshot or {}
    rates, pulses, lost = mon.get("rates_hz", {}), mon.get("pulses", {}), mon.get("lost", {})
    uncovered = mon.get("uncovered_s", {})
    if mon.get("power_MW") is not None:
        power, power_utc = mon["power_MW"], snapshot_utc
    else:
        power, power_utc = sql.power_MW, sql.power_utc
    age = None if snapshot_utc is None else (now - snapshot_utc).total_seconds()
    monitor_up = MONITOR_PROCESS in answered.get("processes", [])
    note = _alarms_note(rc, monitor_up, sql)
    return Status(
        time_utc=now,
        reachable=rc is not None,
        run_control_utc=rc_utc,
        state=answered.get("state", "unknown"),
        run=answered.get("run"),
        elapsed_s=float(answered.get("elapsed_s") or 0.0),
        error=answered.get("error", ""),
        reactor=mon.get("reactor") if mon.get("reactor") in ("on", "off") else "unknown",
        power_MW=power,
        power_utc=power_utc,
        dead_fraction=mon.get("dead_fraction"),
        streams=[
            StreamStatus(
                name=s,
                rate_hz=float(rates.get(s, 0.0)),
                pulses=int(pulses.get(s, 0)),
                lost=int(lost.get(s, 0)),
                uncovered_s=float(uncovered.get(s, 0.0)),
            )
            for s in DATA_STREAM_NAMES
        ],
        events={k: int(v) for k, v in (mon.get("events") or {}).items()},
        processes=list(answered.get("processes", [])),
        snapshot_utc=snapshot_utc,
        snapshot_age_s=age,
        stale=age is None or age > stale_after_s,
        stale_after_s=stale_after_s,
        last_data_utc=snapshot_utc or sql.power_utc,
        database_ok=sql.ok,
        database_error=sql.error,
        database_utc=sql.read_utc,
        monitor_up=monitor_up,
        alarms_known=not note,
        alarms_note=note,
        alarms=sql.alarms,
    )


class LiveStatus:
    """Polls run control, the builder snapshots and SQL in threads; ``latest`` is always
    ready (also before the first poll, and while the database is out), composed when asked
    so that every age in it is current."""

    def __init__(
        self, config: Config, data_dir: Path, engine: Engine, poll_s: float = POLL_INTERVAL_S
    ):
        self.config = config
        self.data_dir = Path(data_dir)
        self.engine = engine
        self.poll_s = poll_s
        self.stale_after_s = config.web.stale_after_s
        self.rates: deque[tuple[datetime, dict[str, float]]] = deque(maxlen=RATE_HISTORY)
        self._snapshots: SnapshotSubscriber | None = None
        """The builder's snapshots, read by the live thread (which owns the socket)."""
        self._rc: dict | None = None
        self._rc_utc: datetime | None = None
        self._snapshot: dict = {}
        self._snapshot_utc: datetime | None = None
        self._sql = SqlView()
        self._schema_ready = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the live and the SQL threads."""
        for name, target in (("live-status", self._run_live), ("live-sql", self._run_sql)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop the threads and wait for them."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5 + self.config.web.db_timeout_s)

    def _every_poll(self, step) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                step()
            except Exception:  # a broken poll must not end live monitoring
                log.exception("live status %s failed", step.__name__)
            self._stop.wait(max(0.0, self.poll_s - (time.monotonic() - started)))

    def _run_live(self) -> None:
        ctx = zmq.Context.instance()
        snapshots = SnapshotSubscriber(ctx, self.config.endpoint("monitor", self.data_dir))
        self._snapshots = snapshots
        control = ControlClient(ctx, self.config.endpoint("transitions", self.data_dir), "web")

        def poll() -> None:
            snapshots.drain()
            control.acknowledge_pending()
            rc = self._ask()
            snapshots.drain()  # what arrived while run control was asked, timed on arrival
            self._update(rc)
            # until the next poll, a snapshot is taken as it arrives (a pushed status shows it
            # within a push interval, not a poll later)
            deadline = time.monotonic() + self.poll_s
            while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
                if snapshots.socket.poll(int(1000 * min(left, SNAPSHOT_WAIT_S)) + 1, zmq.POLLIN):
                    snapshots.drain()
                    self._take_snapshot()

        try:
            self._every_poll(poll)
        finally:
            snapshots.close()
            control.close()

    def _run_sql(self) -> None:
        self._every_poll(self.read_database)

    def read_database(self) -> SqlView:
        """Bring the schema up to date (once), read alarms and power; on an outage keep what
        was read last and say why."""
        try:
            if not self._schema_ready:
                upgrade_database(self.engine)
                self._schema_ready = True
            with session_scope(self.engine, readonly=True) as session:
                view = read_sql(session)
            if self._sql.error not in ("", NOT_READ):
                log.warning("database available again")
        except OUTAGE_ERRORS as err:
            view = replace(self._sql, ok=False, error=outage_reason(err))
            if view.error != self._sql.error:  # once per outage (and change of reason)
                log.warning("%s: %s", UNAVAILABLE, view.error)
        with self._lock:
            self._sql = view
        return view

    def refresh(self) -> Status:
        """Ask run control, take the newest builder snapshot; returns the new status."""
        return self._update(self._ask())

    def _ask(self) -> dict | None:
        """Run control's status, None if it does not answer within STATUS_TIMEOUT_S."""
        try:
            return request(self.config, self.data_dir, "status", timeout_s=STATUS_TIMEOUT_S)
        except NudaqError:
            return None

    def _update(self, rc: dict | None) -> Status:
        snapshot, snapshot_utc = self._newest_snapshot(rc)
        with self._lock:
            self._rc = rc
            if rc is not None:
                self._rc_utc = datetime.now(UTC)
            self._snapshot, self._snapshot_utc = snapshot, snapshot_utc
        status = self.latest
        if status.state == "running" and not status.stale:
            self.rates.append((status.time_utc, {s.name: s.rate_hz for s in status.streams}))
        return status

    def _take_snapshot(self) -> None:
        """Take the newest builder snapshot (between two questions to run control)."""
        with self._lock:
            self._snapshot, self._snapshot_utc = self._newest_snapshot(self._rc)

    def _newest_snapshot(self, rc: dict | None) -> tuple[dict, datetime | None]:
        """The newer of the snapshot received here (timed by its arrival) and the one run
        control holds (timed by the builder's clock)."""
        snapshot, snapshot_utc = self._snapshot, self._snapshot_utc
        subscriber = self._snapshots
        if subscriber is not None and subscriber.age_s is not None:
            snapshot = subscriber.latest
            snapshot_utc = datetime.now(UTC) - timedelta(seconds=subscriber.age_s)
        held = (rc or {}).get("monitor") or {}
        if "time" in held:
            held_utc = datetime.fromtimestamp(float(held["time"]), UTC)
            if snapshot_utc is None or held_utc > snapshot_utc:
                snapshot, snapshot_utc = held, held_utc
        return snapshot, snapshot_utc

    @property
    def latest(self) -> Status:
        """The status now: the newest of every part, each with its time and age."""
        with self._lock:
            return compose_status(
                datetime.now(UTC),
                self._rc,
                self._rc_utc,
                self._snapshot,
                self._snapshot_utc,
                self._sql,
                self.stale_after_s,
            )

    def rate_series(self) -> list[Series]:
        """The rate history of each stream (Hz) since the server started."""
        times = [t for t, _ in self.rates]
        return [
            Series(name=s, unit="Hz", time_utc=times, values=[r.get(s, 0.0) for _, r in self.rates])
            for s in DATA_STREAM_NAMES
        ]

    def command(self, command: str, **fields) -> dict:
        """Send start or stop to run control (blocking; RunControlError if refused)."""
        return request(self.config, self.data_dir, command, **fields)
