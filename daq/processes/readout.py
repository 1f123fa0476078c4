"""The readout process of one front-end: serial list-mode frames -> batches -> ZeroMQ PUSH.

``python -m daq.processes.readout --stream hpge|acv|crv --url URL --config FILE --data-dir DIR``

One OS process per front-end (process and log name ``readout-<stream>``). It hears run
transitions on daq.control.transitions and sends daq.formats.wire batches to the builder:

- ``begin`` {"run": N}: configure the device from ``frontends.<stream>`` (THR, FRAME_MS and
  for the HPGe ADC RTRATE), START it, send BOR (seq 0, watermark = the device's start time).
  A readout restarted during a run is begun with {"incarnation": k} too: its messages are
  numbered as incarnation k of the stream (daq.formats.wire).
- running: the pulses of the frames read are collected (whole arrays, no per-pulse Python)
  and sent as one DATA batch every ``batch_ms`` or at MAX_BATCH_PULSES; a quiet stream sends
  an empty DATA batch (heartbeat) every ``heartbeat_ms``. Each batch carries the latest
  frame's watermark, the frames' dead time, and the frames lost on the line since the
  previous batch (gaps in the frame counter: a frame that failed its CRC or header check,
  or vanished in dropped bytes, leaves exactly one gap, so each lost frame counts once).
- coverage: a loss ends the batch being collected, and the next batch declares the gap
  (daq.formats.wire): the time from the last good frame's watermark to the first good
  frame's after a frame-counter gap (Loss.LINE), or to the device's new start time after a
  reconnect (Loss.RECONNECT). That time is this stream's dead or blind time.
- ``end``: STOP the device, send what is left and EOR (watermark = the END frame's), and
  acknowledge with the run's counts.

Backpressure: sends never block (the serial line must be read on time); batches the builder
has not taken wait in a local queue of at most ``buffer_pulses`` pulses. A batch that does
not fit loses its pulses, which are counted in its ``dropped`` field, and declares the whole
time span it covers a gap (Loss.OVERFLOW, daq.processes.outbox): nothing is lost silently.

A device silent for ``timeout_s`` or whose line broke is reconnected and restarted once
per second (the gap is uncovered time); after ``timeout_s`` of failures the process logs
the reason and exits with status EXIT_DEVICE_LOST.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import zmq

from daq.control.transitions import ControlClient
from daq.core.config import Frontend
from daq.core.errors import ProtocolError
from daq.core.records import DATA_STREAM_NAMES, Loss, Stream, empty_pulses, stream_by_name
from daq.drivers.listmode import EndFrameLost, FrontendDriver
from daq.formats.protocol import Frame
from daq.formats.wire import INCARNATION_SHIFT, KIND_BOR, KIND_DATA, KIND_EOR, Batch
from daq.processes.common import StopFlag, base_parser, common_setup
from daq.processes.outbox import Outbox
from daq.processes.participant import EXIT_DEVICE_LOST, RunParticipant, builder_links

log = logging.getLogger("daq.processes.readout")  # also when run as __main__

MAX_BATCH_PULSES = 65_536
"""A batch is sent as soon as it holds this many pulses (~1 MB)."""
READ_WAIT_S = 0.005
"""Longest wait (s) for serial bytes per turn of the main loop."""
IDLE_POLL_MS = 100
"""Wait for a transition (ms) per turn of the loop between runs."""
RECONNECT_INTERVAL_S = 1.0
"""Pause (s) between two attempts to bring a lost device back."""


class DeviceLost(ProtocolError):
    """The front-end stayed unreachable for longer than its timeout."""


class Readout(RunParticipant):
    """Drives one front-end through runs and turns its frames into batches."""

    def __init__(
        self,
        stream: Stream,
        driver: FrontendDriver,
        settings: Frontend,
        push: zmq.Socket,
        control: ControlClient,
    ) -> None:
        self.stream = stream
        self.driver = driver
        self.settings = settings
        self.control = control
        self.outbox = Outbox(push, settings.buffer_pulses)
        self.run: int | None = None
        self._lost_since: float | None = None
        self._last_attempt = 0.0

    # -- main loop ----------------------------------------------------------------------------
    def serve(self, stop: StopFlag) -> int:
        """Run until ``exit`` or a stop signal; returns the exit status."""
        while not stop:
            if self.run is not None:
                try:
                    self._collect()
                except DeviceLost:
                    self._put(KIND_DATA, self._pulses())
                    self.outbox.drain(2.0)
                    raise
                self._emit_when_due()
            transition = self.control.poll(0 if self.run is not None else IDLE_POLL_MS)
            if transition is not None and self.handle(transition):
                return 0
            self.outbox.flush()
        log.info("stop signal")
        self._leave()
        return 0

    # -- runs ---------------------------------------------------------------------------------
    def _device_settings(self) -> dict[str, object]:
        s = self.settings
        settings: dict[str, object] = {"THR": s.threshold_adc, "FRAME_MS": s.frame_ms}
        if self.stream is Stream.HPGE:
            settings["RTRATE"] = s.rt_rate_hz
        return settings

    def _start_device(self) -> int:
        self.driver.configure(**self._device_settings())
        return self.driver.start()

    def _begin(self, transition: dict) -> None:
        if self.run is not None:
            self.control.ack(transition, ok=False, error=f"run {self.run} is still running")
            return
        try:
            t_start = self._start_device()
        except ProtocolError as err:
            log.warning("cannot start the device (%s); reconnecting", err)
            try:
                self.driver.reconnect()
                t_start = self._start_device()
            except ProtocolError as err:
                log.error("cannot start the device: %s", err)
                self.control.ack(transition, ok=False, error=str(err))
                return
        self.run = int(transition["run"])
        self.seq = int(transition.get("incarnation", 0)) << INCARNATION_SHIFT
        self.watermark = t_start
        self.chunks: list[np.ndarray] = []
        self.pending = 0
        self.frames_taken = 0
        self.dead_ns = 0
        self.gap = Loss.NONE
        self.covered_from = t_start
        self.last_emit = time.monotonic()
        self._lost_mark = self.driver.stats.missing_frames
        self._stats_at_begin = dataclasses.replace(self.driver.stats)
        self._run_sent_at_begin = self.outbox.sent_pulses
        self._run_dropped_at_begin = self.outbox.dropped
        self._run_lost = 0
        self._put(KIND_BOR, empty_pulses())
        log.info("run %d begins at t=%d ns", self.run, t_start)
        self.control.ack(transition, t_start_ns=t_start)

    def _end_run(self, drain_s: float) -> tuple[dict, str]:
        """STOP the device, send the rest and EOR, wait for the builder to take it all.

        The log line "run N ended" gives the run's counts: ``pulses`` sent, ``dropped`` by
        the full buffer, ``not_sent`` (still queued when drain_s ran out), lost frames."""
        error = ""
        end_watermark = self.watermark
        if self._lost_since is None:
            try:
                frames, end = self.driver.stop()
            except EndFrameLost as err:
                log.warning("%s", err)
                frames, end = err.frames, None
            self._take(frames)
            if end is not None and end.missing_before:
                self._lose(Loss.LINE, end.watermark_ns)
            end_watermark = max(end.watermark_ns if end else end_watermark, self.watermark)
        else:
            error = f"device {self.driver.url} lost at end of run"
            log.warning("%s; ending with watermark %d", error, self.watermark)
        if self.pending:
            self._put(KIND_DATA, self._pulses())
        self.watermark = end_watermark
        self._put(KIND_EOR, empty_pulses())
        run = self.run
        self.run = None
        self._lost_since = None
        not_sent, drain_error = self._drain(drain_s)
        error = "; ".join(e for e in (error, drain_error) if e)
        stats, begin = self.driver.stats, self._stats_at_begin
        info = {
            "pulses": self.outbox.sent_pulses - self._run_sent_at_begin,
            "lost_frames": self._run_lost,
            "dropped": self.outbox.dropped - self._run_dropped_at_begin,
            "crc_errors": stats.crc_errors - begin.crc_errors,
            "skipped_bytes": stats.skipped_bytes - begin.skipped_bytes,
        }
        log.info("run %d ended: %s", run, info | {"not_sent": not_sent})
        return info, error

    # -- data ---------------------------------------------------------------------------------
    def _collect(self) -> None:
        """Read what the device sent; notice a broken or silent line and recover from it."""
        if self._lost_since is None:
            try:
                self._take(self.driver.read_frames(READ_WAIT_S))
                silent_s = time.monotonic() - self.driver.last_rx
                if silent_s <= self.settings.timeout_s:
                    return
                reason = f"silent for {silent_s:.1f} s"
            except ProtocolError as err:
                reason = str(err)
            self._lost_since = time.monotonic()
            self._last_attempt = 0.0
            log.warning("device %s lost (%s); reconnecting", self.driver.url, reason)
        self._recover()

    def _recover(self) -> None:
        now = time.monotonic()
        if now - self._last_attempt < RECONNECT_INTERVAL_S:
            time.sleep(READ_WAIT_S)
            return
        self._last_attempt = now
        try:
            self.driver.reconnect()
            t_start = self._start_device()
        except ProtocolError as err:
            if now - self._lost_since > self.settings.timeout_s:
                raise DeviceLost(
                    f"device {self.driver.url} unreachable for {now - self._lost_since:.1f} s"
                    f" (last error: {err}); giving up"
                ) from None
            log.info("reconnect failed: %s", err)
            return
        gap = max(0, t_start - self.watermark)
        self._lose(Loss.RECONNECT, max(self.watermark, t_start))
        self.watermark = max(self.watermark, t_start)
        self._lost_since = None
        log.warning("device %s restarted; %d ns of the gap are not covered", self.driver.url, gap)

    def _take(self, frames: list[Frame]) -> None:
        """Add the frames' pulses, dead time and watermark to the batch being collected."""
        for frame in frames:
            if frame.missing_before:
                self._lose(Loss.LINE, frame.watermark_ns)
            else:  # after a gap, a frame's dead time is of uncovered time
                self.dead_ns += frame.dead_ns
            if len(frame.pulses):
                self.chunks.append(frame.pulses)
                self.pending += len(frame.pulses)
            self.frames_taken += 1
            self.watermark = max(self.watermark, frame.watermark_ns)

    def _lose(self, reason: Loss, covered_from_ns: int) -> None:
        """Time before covered_from_ns was lost: end the batch being collected there, and
        let the next one declare the gap from its watermark."""
        if self.frames_taken:
            self._put(KIND_DATA, self._pulses())
        self.gap = self.gap or reason
        self.covered_from = max(self.covered_from, covered_from_ns)

    def _emit_when_due(self) -> None:
        since_ms = 1000 * (time.monotonic() - self.last_emit)
        if (
            self.pending >= MAX_BATCH_PULSES
            or (self.pending and since_ms >= self.settings.batch_ms)
            or since_ms >= self.settings.heartbeat_ms
        ):
            self._put(KIND_DATA, self._pulses())

    def _pulses(self) -> np.ndarray:
        pulses = np.concatenate(self.chunks) if self.chunks else empty_pulses()
        self.chunks = []
        self.pending = 0
        return pulses

    def _put(self, kind: int, pulses: np.ndarray) -> None:
        # Lost frames are the frame-counter gaps, not CRC failures plus bad headers plus gaps:
        # a damaged frame is a CRC (or header) failure *and* the gap it leaves, and a bad
        # header can be noise that only looked like a sync word; gaps count each loss once.
        total = self.driver.stats.missing_frames
        lost, self._lost_mark = total - self._lost_mark, total
        self._run_lost += lost
        batch = Batch(
            kind,
            self.stream,
            self.run,
            self.seq,
            self.watermark,
            pulses,
            self.dead_ns,
            0,
            lost,
            self.gap,
            self.covered_from if self.gap else self.watermark,
        )
        self.seq += 1
        self.dead_ns = 0
        self.frames_taken = 0
        self.gap = Loss.NONE
        self.covered_from = self.watermark
        self.last_emit = time.monotonic()
        self.outbox.put(batch)


def open_device(url: str, settings: Frontend, stop: StopFlag) -> FrontendDriver:
    """Open and identify the device, trying once per second for up to ``timeout_s``."""
    deadline = time.monotonic() + settings.timeout_s
    while True:
        try:
            driver = FrontendDriver(url, settings.baudrate, settings.timeout_s)
            try:
                log.info("device %s: %s", url, driver.identify())
            except ProtocolError:
                driver.close()
                raise
            return driver
        except ProtocolError as err:
            if time.monotonic() > deadline or stop:
                raise DeviceLost(f"{err}; giving up after {settings.timeout_s:g} s") from None
            log.info("device not ready: %s", err)
            time.sleep(RECONNECT_INTERVAL_S)


def main(argv: list[str] | None = None) -> int:
    """Main of the readout service (one per front-end stream)."""
    parser = base_parser("Read one front-end and send its pulses to the builder.")
    parser.add_argument("--stream", required=True, choices=DATA_STREAM_NAMES)
    parser.add_argument("--url", required=True, help="pyserial URL of the front-end")
    args = parser.parse_args(argv)
    name = f"readout-{args.stream}"
    config, data_dir = common_setup(args, name)
    stream = stream_by_name(args.stream)
    settings = getattr(config.frontends, args.stream)
    stop = StopFlag()
    try:
        driver = open_device(args.url, settings, stop)
    except DeviceLost as err:
        log.error("%s", err)
        return EXIT_DEVICE_LOST
    try:
        with builder_links(config, data_dir, name) as (push, control):
            return Readout(stream, driver, settings, push, control).serve(stop)
    except DeviceLost as err:
        log.error("%s", err)
        return EXIT_DEVICE_LOST
    finally:
        driver.close()
