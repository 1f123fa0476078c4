"""The monitoring process: raises and clears alarms, and runs the live analysis on a cadence.

``python -m daq.processes monitor --config FILE --data-dir DIR --db URL`` (``nudaq up``
starts it).

About once per second it builds an ``online.monitoring.alarms.Observation`` from run control's
status (``daq.control.runcontrol.request``), the builder's monitor snapshots (SUB on
``network.monitor``), the newest slow-control readings in SQL, the free space of the data
directory and the state of its own database writes, and evaluates the alarm conditions. Changes
go to ``online.monitoring.record.AlarmRecord`` (SQL with automatic logbook entries, written by a
thread and kept in memory through a database outage) and raised critical alarms to
``online.monitoring.notify.Notifier`` (e-mail, webhook; also threads): the loop itself waits on
neither. Run control answers only between transitions, and at a cold start only once it has
started every process and begun the run, so a missing answer counts as "unreachable" only after
``silent_stream_s`` without one, or ``STARTUP_GRACE_S`` before its first answer (counted from
the monitor's start).

Every ``analysis.interval_s`` while a run is going and the database is available it runs the
live analysis (online.analysis.live.record_live_analysis) in a worker thread, one at a time; it
records its result in ``analysis_history``.
"""

from __future__ import annotations

import logging
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import zmq
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from daq.control.observer import SnapshotSubscriber
from daq.control.runcontrol import BEGIN_ORDER, request
from daq.control.transitions import ControlClient
from daq.core.config import Config
from daq.core.errors import NudaqError
from daq.core.paths import db_url
from daq.core.records import DATA_STREAM_NAMES
from daq.processes.common import StopFlag, base_parser, common_setup
from daq.store.readings import newest_reading
from daq.store.session import make_engine, session_scope, upgrade_database
from online.analysis.live import record_live_analysis
from online.monitoring.alarms import AlarmEvaluator, Condition, Observation
from online.monitoring.expected import CANDIDATE, ExpectedRate, from_good_runs
from online.monitoring.notify import Notifier
from online.monitoring.record import AlarmRecord

log = logging.getLogger(__name__)

LOOP_S = 1.0
STATUS_TIMEOUT_S = 2.0
STARTUP_GRACE_S = 30.0
"""Wall s from the monitor's start that run control and the processes have to appear."""
DB_RETRY_S = 5.0
"""Wall s between attempts to write alarm changes while the database is unavailable."""
SLOW_CONTROL_STALE_S = 300.0
"""Slow-control readings older than this are not used for alarms (wall s)."""
HV_QUANTITY = "hv_V"
LN2_QUANTITY = "ln2_pct"


def latest_reading(session, quantity: str, max_age_s: float) -> float | None:
    """The newest value of a slow-control quantity if younger than max_age_s, else None."""
    newest = newest_reading(session, quantity)
    if newest is None:
        return None
    value, stamp = newest
    return value if (datetime.now(UTC) - stamp).total_seconds() <= max_age_s else None


def counters(snap: dict, obs: Observation) -> None:
    """Fill the observation's counters, the DAQ seconds they covered, and each stream's
    progress from a builder snapshot of the current run.

    A stream counts over its complete time less its uncovered time; candidates over the HPGe
    elapsed time less the exposure's uncovered time (online.monitoring.expected).
    """
    pulses = snap.get("pulses", {})
    obs.counters = {s: int(pulses[s]) for s in DATA_STREAM_NAMES if s in pulses}
    complete = snap.get("complete_ns")
    if complete is not None:
        uncovered = snap.get("uncovered_s", {})
        for s in DATA_STREAM_NAMES:
            obs.progress[s] = complete.get(s, -1)
            if complete.get(s, -1) > 0:  # the stream covers time: a dead one counts 0 pulses
                obs.counters[s] = int(pulses.get(s, 0))
                obs.counter_s[s] = complete[s] / 1e9 - uncovered.get(s, 0.0)
    if CANDIDATE in snap.get("events", {}):
        obs.counters[CANDIDATE] = int(snap["events"][CANDIDATE])
        if "elapsed_s" in snap:
            obs.counter_s[CANDIDATE] = snap["elapsed_s"] - snap.get("exposure_uncovered_s", 0.0)


class Monitor:
    """One monitoring loop over a running system.

    ``db_retry_s``: wall s between writes of alarm changes while the database is unavailable.
    """

    def __init__(
        self,
        config: Config,
        data_dir: Path,
        engine: Engine,
        ctx=None,
        db_retry_s: float = DB_RETRY_S,
    ) -> None:
        self.config = config
        self.data_dir = Path(data_dir)
        self.engine = engine
        ctx = ctx or zmq.Context.instance()
        self.snapshots = SnapshotSubscriber(ctx, config.endpoint("monitor", data_dir))
        self.control = ControlClient(ctx, config.endpoint("transitions", data_dir), "monitor")
        self.evaluator = AlarmEvaluator(
            config.alarms, BEGIN_ORDER, STARTUP_GRACE_S, history=self._good_runs
        )
        self.record = AlarmRecord(engine, db_retry_s)
        self.notifier = Notifier(config.alarms)
        self.status: dict | None = None
        self.status_at = time.monotonic()
        self.slow_control: tuple[float | None, float | None] = (None, None)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="live-analysis")
        self._analysis_job: Future | None = None
        self._next_analysis = time.monotonic() + config.analysis.interval_s

    def _good_runs(self, run: int | None) -> dict[str, ExpectedRate]:
        """Expected rates from earlier good runs; none while the database is unavailable."""
        try:
            with session_scope(self.engine, readonly=True) as session:
                return from_good_runs(session, run, self.config.alarms)
        except SQLAlchemyError as err:
            log.warning("expected rates of earlier runs unknown (database): %s", err)
            return {}

    def _run_control(self, now: float) -> dict | None:
        """Run control's status; the previous one while it is briefly busy; None if gone."""
        try:
            self.status = request(self.config, self.data_dir, "status", timeout_s=STATUS_TIMEOUT_S)
            self.status_at = now
        except NudaqError as err:
            limit = self.config.alarms.silent_stream_s if self.status else STARTUP_GRACE_S
            if now - self.status_at > limit:
                log.debug("run control does not answer: %s", err)
                return None
        return self.status or {"state": "starting"}

    def _slow_control(self) -> tuple[float | None, float | None]:
        """(HV in V, LN2 in %), as last read while the database cannot be read."""
        if self.record.database_error:
            return self.slow_control
        try:
            with session_scope(self.engine, readonly=True) as session:
                self.slow_control = (
                    latest_reading(session, HV_QUANTITY, SLOW_CONTROL_STALE_S),
                    latest_reading(session, LN2_QUANTITY, SLOW_CONTROL_STALE_S),
                )
        except SQLAlchemyError as err:
            log.debug("slow control not read: %s", err)
        return self.slow_control

    def observe(self) -> Observation:
        """What the system looks like now."""
        self.snapshots.drain()
        self.control.acknowledge_pending()
        now = time.monotonic()
        database_error = self.record.database_error
        rc = self._run_control(now)
        if rc is None:
            return Observation(time_s=now, state="unreachable", database_error=database_error)
        if self.snapshots.received_at is not None:
            snap = self.snapshots.latest
        else:
            snap = rc.get("monitor") or {}
        hv, ln2 = self._slow_control()
        obs = Observation(
            time_s=now,
            state=rc.get("state", "unknown"),
            run=rc.get("run"),
            error=rc.get("error", ""),
            processes=list(rc.get("processes", [])),
            hv_V=hv,
            ln2_pct=ln2,
            disk_free_GB=shutil.disk_usage(self.data_dir).free / 1e9,
            database_error=database_error,
        )
        if "time" in snap:
            obs.progress["snapshot"] = snap["time"]
        if snap.get("state") == "running" and snap.get("run") == obs.run:
            counters(snap, obs)
            obs.lost = {
                s: int(v) for s, v in snap.get("lost", {}).items() if s in DATA_STREAM_NAMES
            }
            if snap.get("horizon_ns") is not None:
                obs.progress["horizon"] = snap["horizon_ns"]
        return obs

    def step(self) -> list[Condition]:
        """Observe, evaluate, queue alarm changes and notify raised critical alarms; start the
        live analysis when it is due."""
        obs = self.observe()
        active = self.evaluator.evaluate(obs)
        now = datetime.now(UTC)
        for condition in self.record.update(active, obs.run, now):
            self.notifier.notify(condition, now, obs.run)
        self._maybe_analyse(obs)
        return active

    def _maybe_analyse(self, obs: Observation) -> None:
        now = time.monotonic()
        if now < self._next_analysis or obs.state != "running" or obs.database_error:
            return
        if self._analysis_job is not None and not self._analysis_job.done():
            return
        self._next_analysis = now + self.config.analysis.interval_s
        self._analysis_job = self._executor.submit(self._analyse, obs.run)

    def _analyse(self, run: int | None) -> None:
        try:
            record_live_analysis(self.engine, self.config, run)
        except NudaqError as err:
            log.info("live analysis not possible yet: %s", err)
        except Exception:  # the monitor keeps raising alarms whatever the analysis does
            log.exception("live analysis failed")

    def run(self, stop: StopFlag) -> None:
        """Loop until stop is set."""
        while not stop:
            started = time.monotonic()
            try:
                self.step()
            except NudaqError as err:
                log.error("monitoring step failed: %s", err)
            time.sleep(max(0.0, LOOP_S - (time.monotonic() - started)))

    def close(self) -> None:
        """Wait for a running analysis, write what the record holds, send what is queued,
        close the sockets."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.record.close()
        self.notifier.close()
        self.snapshots.close()
        self.control.close()


def main(argv: list[str] | None = None) -> int:
    """Main of the monitor service."""
    parser = base_parser("nudaq monitoring: alarms and live analysis")
    args = parser.parse_args(argv)
    config, data_dir = common_setup(args, "monitor")
    engine = make_engine(db_url(args.db, data_dir))
    upgrade_database(engine)
    stop = StopFlag()
    monitor = Monitor(config, data_dir, engine)
    try:
        monitor.run(stop)
    finally:
        monitor.close()
        engine.dispose()
    return 0
