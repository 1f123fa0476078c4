"""The live state of a running system as the web server sees it, refreshed every second.

A background thread asks run control for its status (``daq.control.runcontrol.request``), reads the
builder's monitor snapshots directly from their PUB endpoint (so rates keep coming while run
control is busy with a transition), adds the open alarms from SQL and keeps the newest
``Status`` plus a rate history for the trends page. It also says hello on the transition
channel, so run control lists the web server among its processes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

import zmq
from sqlalchemy import Engine, select

from daq.control.observer import SnapshotSubscriber
from daq.control.runcontrol import request
from daq.control.transitions import ControlClient
from daq.core.config import Config
from daq.core.errors import NudaqError
from daq.core.records import DATA_STREAM_NAMES
from daq.store.models import Alarm, SlowControlReading
from daq.store.session import session_scope
from online.web.models import AlarmOut, Series, Status, StreamStatus

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0
STATUS_TIMEOUT_S = 1.0
SNAPSHOT_FRESH_S = 5.0
"""A monitor snapshot older than this is not trusted for rates."""
RATE_HISTORY = 3600
"""Rate samples kept for the trends page (one per poll)."""
POWER_QUANTITY = "power_MW"
"""The slow-control quantity of the reactor thermal power (MW)."""


def open_alarms(session) -> list[AlarmOut]:
    """Alarms not cleared yet, newest first."""
    rows = session.scalars(
        select(Alarm).where(Alarm.cleared_utc.is_(None)).order_by(Alarm.raised_utc.desc())
    )
    return [AlarmOut.model_validate(a, from_attributes=True) for a in rows]


def compose_status(
    rc: dict | None, snapshot: dict, snapshot_age_s: float | None, session
) -> Status:
    """The overview from a run control status (None if unreachable), a builder snapshot and
    SQL (alarms; the reactor power when the snapshot has none)."""
    rc = rc or {}
    mon = snapshot or {}
    rates, pulses, lost = mon.get("rates_hz", {}), mon.get("pulses", {}), mon.get("lost", {})
    uncovered = mon.get("uncovered_s", {})
    power = mon.get("power_MW")
    if power is None:
        power = session.scalar(
            select(SlowControlReading.value)
            .where(SlowControlReading.quantity == POWER_QUANTITY)
            .order_by(SlowControlReading.time_utc.desc())
            .limit(1)
        )
    return Status(
        time_utc=datetime.now(UTC),
        reachable=bool(rc),
        state=rc.get("state", "unknown"),
        run=rc.get("run"),
        elapsed_s=float(rc.get("elapsed_s") or 0.0),
        error=rc.get("error", ""),
        reactor=mon.get("reactor") if mon.get("reactor") in ("on", "off") else "unknown",
        power_MW=power,
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
        processes=list(rc.get("processes", [])),
        alarms=open_alarms(session),
        monitor_age_s=snapshot_age_s,
    )


class LiveStatus:
    """Polls run control and the builder snapshots in a thread; ``latest`` is always ready."""

    def __init__(
        self, config: Config, data_dir: Path, engine: Engine, poll_s: float = POLL_INTERVAL_S
    ):
        self.config = config
        self.data_dir = Path(data_dir)
        self.engine = engine
        self.poll_s = poll_s
        self.rates: deque[tuple[datetime, dict[str, float]]] = deque(maxlen=RATE_HISTORY)
        self._snapshots: SnapshotSubscriber | None = None
        """The builder's snapshots, read by the polling thread (which owns the socket)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        with session_scope(engine, readonly=True) as session:
            self.latest = compose_status(None, {}, None, session)

    def start(self) -> None:
        """Start the polling thread."""
        self._thread = threading.Thread(target=self._run, name="live-status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the polling thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        ctx = zmq.Context.instance()
        snapshots = SnapshotSubscriber(ctx, self.config.endpoint("monitor", self.data_dir))
        self._snapshots = snapshots
        control = ControlClient(ctx, self.config.endpoint("transitions", self.data_dir), "web")
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                snapshots.drain()
                control.acknowledge_pending()
                try:
                    self.refresh()
                except Exception:  # a broken poll must not end live monitoring
                    log.exception("live status refresh failed")
                self._stop.wait(max(0.0, self.poll_s - (time.monotonic() - started)))
        finally:
            snapshots.close()
            control.close()

    def refresh(self) -> Status:
        """Ask run control, combine with the newest snapshot and SQL; returns the new status."""
        try:
            rc = request(self.config, self.data_dir, "status", timeout_s=STATUS_TIMEOUT_S)
        except NudaqError:
            rc = None
        snapshots = self._snapshots
        snapshot = snapshots.latest if snapshots is not None else {}
        age = snapshots.age_s if snapshots is not None else None
        if rc is not None and (age is None or age > SNAPSHOT_FRESH_S) and rc.get("monitor"):
            snapshot, age = rc["monitor"], None
        with session_scope(self.engine, readonly=True) as session:
            status = compose_status(rc, snapshot, age, session)
        self.latest = status
        if status.state == "running" and snapshot:
            self.rates.append((status.time_utc, {s.name: s.rate_hz for s in status.streams}))
        return status

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
