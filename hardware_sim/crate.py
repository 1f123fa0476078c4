"""The simulated crate: one common clock, one generator, four devices, one event loop.

The clock reads t_ns = t0 + (monotonic elapsed) x sim.speed, with t0 = time.time_ns() when
the crate is made. As the clock advances the crate generates the next slice
[t_generated, now) at the slow-control device's current true reactor power and hands each
front-end its stream's pulses; the front-ends send frames from there. One thread serves every
line (select), so devices, generator and truth file need no locks; another thread acts on them
through ``call`` (run on the loop's next turn), as ``hold_silent`` and ``drop_line`` do.

Ground truth goes to ``<data_dir>/sim/``: ``truth.arrow`` (when sim.truth) and
``faults.json``, both rewritten at least every second and at close (hardware_sim.truth).
With ``record=True`` the devices also keep, in memory, every command received, every START,
every frame sent with its fate on the line and every READ? answered with its true values
(hardware_sim.devices, "Ground truth").
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TypeVar

from daq.core.config import Config
from daq.core.records import DATA_STREAMS, STREAM_NAMES, Stream
from hardware_sim.devices import ListModeDevice, SlowControlDevice, TextDevice, make_line
from hardware_sim.generator import Generator
from hardware_sim.truth import FAULTS_FILE, TRUTH_FILE, TruthWriter, write_fault_counts

log = logging.getLogger(__name__)

T = TypeVar("T")

FLUSH_INTERVAL_S = 0.5
"""Wall seconds between truth and fault-count flushes."""
MIN_TICK_S = 0.002
MAX_SLICE_WALL_S = 0.02
"""Longest slice generated at once, in wall seconds of the clock (x speed in simulated s)."""
LAG_WARNING_S = 1.0
"""Generation lagging the clock by this many wall seconds is logged (at most so often)."""
TRUTH_BATCH_ROWS = 100_000
"""Truth rows written as soon as this many wait (keeps each flush short)."""


class SimCrate:
    """The simulated hardware of one experiment (see module docstring).

    ``run(stop)`` serves until ``stop()`` is true; ``start()`` does it in a background thread
    (tests), ``close()`` stops, flushes the truth and closes every line. ``record`` makes the
    devices keep their in-memory ground truth (commands, STARTs, frames, readings).
    """

    def __init__(self, config: Config, data_dir: Path, record: bool = False) -> None:
        sim = config.sim
        self.config = config
        self.speed = sim.speed
        self.sim_dir = Path(data_dir) / "sim"
        self.sim_dir.mkdir(parents=True, exist_ok=True)
        self.generator = Generator(sim, config.detector, sim.seed)
        self.devices: dict[Stream, ListModeDevice] = {
            stream: ListModeDevice(
                stream,
                self,
                make_line(sim.transport),
                getattr(config.frontends, STREAM_NAMES[stream]),
                getattr(sim.faults, STREAM_NAMES[stream]),
                dead_ns=sim.adc_dead_time_ns if stream == Stream.HPGE else 0,
                rt_rate_hz=sim.rt_rate_hz,
                seed=sim.seed,
                record=record,
            )
            for stream in DATA_STREAMS
        }
        self.slowcontrol = SlowControlDevice(
            sim, self, make_line(sim.transport), sim.seed, record=record
        )
        self.truth = TruthWriter(self.sim_dir / TRUTH_FILE) if sim.truth else None
        self.pulses_generated = {STREAM_NAMES[s]: 0 for s in DATA_STREAMS}
        self._all: list[TextDevice] = [*self.devices.values(), self.slowcontrol]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._write_failed = False
        self._lag_warned_s = 0.0
        self._calls: deque[tuple[Callable[[], object], Future]] = deque()
        self._calls_lock = threading.Lock()
        self._serving = False
        self._loop_thread: int | None = None
        self.t0_ns = time.time_ns()
        self._mono0 = time.monotonic_ns()
        self.t_generated_ns = self.t0_ns

    @property
    def urls(self) -> dict[str, str]:
        """pyserial URL of every device, by name (hpge, acv, crv, slowcontrol)."""
        return {d.name: d.url for d in self._all}

    @property
    def fault_counts(self) -> dict[str, dict[str, int]]:
        return {d.name: d.fault_counts for d in self.devices.values()}

    def device(self, name: str) -> TextDevice:
        """A device by name (hpge, acv, crv, slowcontrol)."""
        for device in self._all:
            if device.name == name:
                return device
        raise KeyError(f"no device {name!r}; devices: {', '.join(self.urls)}")

    def call(self, fn: Callable[[], T], timeout_s: float = 10.0) -> T:
        """Run ``fn()`` in the serving loop on its next turn and return its result: the
        thread-safe way for another thread to act on the devices. Runs it at once when the
        loop is not serving (or when called from the loop itself)."""
        with self._calls_lock:
            if not self._serving or threading.get_ident() == self._loop_thread:
                future = None
            else:
                future = Future()
                self._calls.append((fn, future))
        if future is None:
            return fn()
        return future.result(timeout_s)

    def hold_silent(self, name: str, silent: bool = True) -> None:
        """Hold a front-end silent, or release it (ListModeDevice.hold_silent)."""
        self.call(lambda: self.device(name).hold_silent(silent))

    def drop_line(self, name: str) -> None:
        """Drop a device's line now, as a dying device server would (TextDevice.disconnect)."""
        self.call(lambda: self.device(name).disconnect())

    def _run_calls(self) -> None:
        while True:
            with self._calls_lock:
                if not self._calls:
                    return
                fn, future = self._calls.popleft()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except Exception as err:
                    future.set_exception(err)

    def now_ns(self) -> int:
        """The common clock (ns)."""
        return self.t0_ns + int((time.monotonic_ns() - self._mono0) * self.speed)

    def _generate_slice(self, target_ns: int) -> None:
        """Generate towards target_ns, at most MAX_SLICE_WALL_S worth of simulated time.

        Bounded slices keep every turn of the event loop short, so lines are served without
        long pauses even after the loop fell behind the clock (then the watermarks lag).
        """
        t0 = self.t_generated_ns
        t1 = min(target_ns, t0 + int(MAX_SLICE_WALL_S * self.speed * 1e9))
        if t1 <= t0:
            return
        lag_s = (target_ns - t1) * 1e-9 / self.speed
        if lag_s > LAG_WARNING_S and time.monotonic() - self._lag_warned_s > LAG_WARNING_S:
            self._lag_warned_s = time.monotonic()
            log.warning("generation lags the clock by %.1f wall s: too fast for this CPU", lag_s)
        self.generator.rt_rate_hz = self.devices[Stream.HPGE].rt_rate_hz
        pulses, truth = self.generator.generate(t0, t1, self.slowcontrol.power_MW(t0))
        self.t_generated_ns = t1
        for stream, device in self.devices.items():
            device.feed(pulses[stream])
            self.pulses_generated[device.name] += len(pulses[stream])
        if self.truth is not None:
            self.truth.append(truth)

    def start(self) -> SimCrate:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.run, args=(self._stop.is_set,), daemon=True)
        with self._calls_lock:
            self._serving = True  # calls from now on wait for the loop
            self._loop_thread = None
        self._thread.start()
        return self

    def run(self, stop: Callable[[], bool]) -> None:
        """Serve every line until stop() is true."""
        with self._calls_lock:
            self._serving = True
            self._loop_thread = threading.get_ident()
        try:
            self._serve(stop)
        finally:
            with self._calls_lock:
                self._serving = False
            self._run_calls()

    def _serve(self, stop: Callable[[], bool]) -> None:
        next_flush = time.monotonic() + FLUSH_INTERVAL_S
        log.info("crate up: %s, speed %g", self.urls, self.speed)
        while not stop() and not self._stop.is_set():
            self._run_calls()
            tick = max(MIN_TICK_S, min(d.frame_s for d in self.devices.values()) / 2)
            self._serve_io(tick)
            self._generate_slice(self.now_ns())
            wall = time.monotonic()
            for device in self.devices.values():
                device.tick(wall)
            self._flush_output()
            if wall >= next_flush or self._truth_backlog():
                self.flush()
                next_flush = wall + FLUSH_INTERVAL_S

    def _serve_io(self, timeout_s: float) -> None:
        """Wait up to timeout_s for host bytes or writable lines; handle them."""
        owner = {}
        for device in self._all:
            for fd in device.line.read_fds():
                owner[fd] = device
        writers = {d.line.write_fd(): d for d in self._all if d.line.wants_write()}
        readable, writable, _ = select.select(list(owner), list(writers), [], timeout_s)
        for fd in readable:
            device = owner[fd]
            data, changed = device.line.on_readable(fd)
            if changed:
                device.host_changed()
            if data:
                device.receive(data)
        for fd in writable:
            if writers[fd].line.wants_write():
                writers[fd].line.flush()

    def _truth_backlog(self) -> bool:
        return self.truth is not None and self.truth.pending_rows >= TRUTH_BATCH_ROWS

    def _flush_output(self) -> None:
        for device in self._all:
            if device.line.wants_write():
                device.line.flush()

    def flush(self) -> None:
        """Write pending truth rows and the fault counts. The hardware does not stop for a
        full disk: a write that fails is logged (once until one succeeds), and the truth of
        that moment is lost."""
        try:
            if self.truth is not None:
                self.truth.flush()
            write_fault_counts(self.sim_dir / FAULTS_FILE, self.fault_counts)
        except OSError as err:
            if not self._write_failed:
                log.warning("ground truth not written (the simulation goes on): %s", err)
            self._write_failed = True
            return
        self._write_failed = False

    def close(self) -> None:
        """Stop serving, flush the ground truth, close every line."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self.truth is not None:
            self.truth.close()
        write_fault_counts(self.sim_dir / FAULTS_FILE, self.fault_counts)
        for device in self._all:
            device.close()
        log.info("crate closed: generated %s", self.pulses_generated)

    def __enter__(self) -> SimCrate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
