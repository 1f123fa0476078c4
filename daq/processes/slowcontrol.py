"""The slow-control process: readings to SQL, and the reactor stream to the builder.

``python -m daq.processes.slowcontrol --url URL --config FILE --data-dir DIR --db URL``

Every ``slowcontrol.poll_interval_s`` seconds of the common clock (that clock runs
``sim.speed`` times faster than the wall clock on simulated hardware) the device is read
once (``READ?``) and each quantity becomes a row of the ``slow_control`` table, runs or no
runs. During a run each reading is also one pulse of the REACTOR stream (daq.core.records:
``t_ns`` = the reading's clock, ``adc`` = thermal power in kW, ``FLAG_REACTOR_ON`` when the
power is at least ``reactor.on_threshold_MW``), sent as a DATA batch whose watermark is
just past the reading, so the builder knows the reactor state up to that time:

- ``begin`` {"run": N}: read, send BOR (watermark = the reading's t_ns) and the reading
  ({"incarnation": k} too after a restart during the run: daq.formats.wire).
- each poll: send the reading.
- ``end``: one last reading, then EOR (watermark = that reading's t_ns + 1).

Readings go to SQL as queued writes (daq.store.durable): the poll never waits for the
database, and a reading taken while it is away is stored, with the time it was taken, when
it is back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from datetime import datetime

import zmq
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from daq.build.reactor import reactor_pulse
from daq.control.transitions import ControlClient
from daq.core.config import Config
from daq.core.errors import ProtocolError
from daq.core.paths import db_url
from daq.core.records import Stream, empty_pulses
from daq.drivers.slowcontrol_device import QUANTITIES, Reading, SlowControlDriver
from daq.formats.wire import INCARNATION_SHIFT, KIND_BOR, KIND_DATA, KIND_EOR, Batch
from daq.processes.common import StopFlag, base_parser, common_setup
from daq.processes.outbox import Outbox
from daq.processes.participant import EXIT_DEVICE_LOST, RunParticipant, builder_links
from daq.store.durable import DurableWriter, first_line
from daq.store.models import SlowControlReading, utcnow
from daq.store.session import make_engine, upgrade_database

log = logging.getLogger("daq.processes.slowcontrol")  # also when run as __main__

UNITS = {"power_MW": "MW", "hv_V": "V", "ln2_pct": "%", "temp_C": "degC"}
"""The unit stored with each quantity."""
QUEUE_PULSES = 1_000_000
"""Reactor readings the process holds while the builder pushes back (never reached)."""

assert set(UNITS) == set(QUANTITIES)


READING = "slow-control"
"""The kind of slow control's queued writes: one reading."""


def reading_write(reading: Reading) -> dict:
    """The data of a READING write: the reading, and when it was taken."""
    return asdict(reading) | {"time_utc": utcnow().isoformat()}


def record(session: Session, data: dict) -> None:
    """The applier of READING writes: a row per quantity, in the writer's transaction."""
    time_utc = datetime.fromisoformat(data["time_utc"])
    session.add_all(
        SlowControlReading(
            time_utc=time_utc, clock_ns=data["t_ns"], quantity=q, value=data[q], unit=UNITS[q]
        )
        for q in QUANTITIES
    )


class SlowControl(RunParticipant):
    """Polls the device, records every reading, and feeds the REACTOR stream during runs."""

    def __init__(
        self,
        driver: SlowControlDriver,
        config: Config,
        writes: DurableWriter,
        push: zmq.Socket,
        control: ControlClient,
    ) -> None:
        self.driver = driver
        self.writes = writes
        self.control = control
        self.on_threshold_MW = config.reactor.on_threshold_MW
        self.interval_s = config.slowcontrol.poll_interval_s / config.sim.speed
        self.outbox = Outbox(push, QUEUE_PULSES)
        self.run: int | None = None
        self.seq = 0
        self.last: Reading | None = None
        self.readings = 0
        self._failing = False

    def serve(self, stop: StopFlag) -> int:
        """Poll and serve transitions until ``exit`` or a stop signal; returns the exit status."""
        next_poll = time.monotonic()
        while not stop:
            wait_ms = max(0, int(1000 * (next_poll - time.monotonic())))
            transition = self.control.poll(min(wait_ms, 100))
            if transition is not None and self.handle(transition):
                return 0
            if time.monotonic() >= next_poll:
                next_poll = max(next_poll + self.interval_s, time.monotonic())
                reading = self.read()
                if reading is not None and self.run is not None:
                    self._send(KIND_DATA, reading.t_ns + 1, reading)
            self.outbox.flush()
        log.info("stop signal")
        self._leave()
        return 0

    def read(self) -> Reading | None:
        """Read the device and record the reading; None (logged once) while it fails."""
        try:
            if self._failing:
                self.driver.reconnect()
            reading = self.driver.read()
        except ProtocolError as err:
            if not self._failing:
                log.warning("cannot read slow control: %s", err)
            self._failing = True
            return None
        if self._failing:
            log.warning("slow control device %s answers again", self.driver.url)
        self._failing = False
        self.writes.submit(READING, reading_write(reading))
        self.last = reading
        self.readings += 1
        return reading

    def _begin(self, transition: dict) -> None:
        if self.run is not None:
            self.control.ack(transition, ok=False, error=f"run {self.run} is still running")
            return
        reading = self.read()
        if reading is None:
            self.control.ack(transition, ok=False, error=f"no reading from {self.driver.url}")
            return
        self.run = int(transition["run"])
        self.seq = int(transition.get("incarnation", 0)) << INCARNATION_SHIFT
        self._readings_at_begin = self.readings - 1
        self._send(KIND_BOR, reading.t_ns)
        self._send(KIND_DATA, reading.t_ns + 1, reading)
        log.info("run %d begins: %s", self.run, reading)
        self.control.ack(transition, power_MW=reading.power_MW)

    def _end_run(self, drain_s: float) -> tuple[dict, str]:
        """One last reading, EOR, and a wait of up to drain_s (s) for the builder to take it
        all. The log line "run N ended" gives the ``readings`` sent as REACTOR pulses and
        how many of them were ``not_sent`` (still queued when drain_s ran out)."""
        reading = self.read()
        if reading is not None:
            self._send(KIND_DATA, reading.t_ns + 1, reading)
        self._send(KIND_EOR, self.last.t_ns + 1)
        not_sent, error = self._drain(drain_s)
        info = {"readings": self.readings - self._readings_at_begin}
        log.info("run %d ended: %s", self.run, info | {"not_sent": not_sent})
        self.run = None
        return info, error

    def _send(self, kind: int, watermark_ns: int, reading: Reading | None = None) -> None:
        pulses = (
            empty_pulses()
            if reading is None
            else reactor_pulse(reading.t_ns, reading.power_MW, self.on_threshold_MW)
        )
        self.outbox.put(Batch(kind, Stream.REACTOR, self.run, self.seq, watermark_ns, pulses))
        self.seq += 1


def main(argv: list[str] | None = None) -> int:
    """Main of the slow-control service."""
    parser = base_parser("Record slow-control readings and send the reactor stream.")
    parser.add_argument("--url", required=True, help="pyserial URL of the slow-control device")
    args = parser.parse_args(argv)
    config, data_dir = common_setup(args, "slowcontrol")
    engine = make_engine(db_url(args.db, data_dir))
    try:
        upgrade_database(engine)
    except SQLAlchemyError as err:  # a restart during an outage: the readings queue
        log.warning("database unavailable at start, schema not checked: %s", first_line(err))
    stop = StopFlag()
    try:
        driver = SlowControlDriver(args.url)
        log.info("device %s: %s", args.url, driver.identify())
    except ProtocolError as err:
        log.error("%s", err)
        engine.dispose()
        return EXIT_DEVICE_LOST
    writes = DurableWriter(engine, data_dir, "slowcontrol", {READING: record}, config.database)
    try:
        with builder_links(config, data_dir, "slowcontrol") as (push, control):
            return SlowControl(driver, config, writes, push, control).serve(stop)
    finally:
        driver.close()
        writes.close()
        engine.dispose()
