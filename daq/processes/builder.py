"""The builder process: PULL batches, build events, record raw files, fill SQL, publish stats.

``python -m daq.processes.builder --config FILE --data-dir DIR --db URL``

Sockets (endpoints from the configuration):

- PULL bound at ``network.builder_data``: the readouts' and slow control's batches. Its
  receive queue is kept short, so a builder that falls behind pushes back on the readouts
  (which count what their own buffers drop). The socket is read only while a run is open:
  batches sent before the begin-of-run wait in ZeroMQ instead of being lost. No message part
  larger than the largest legal message (``max_message_bytes``) is ever taken: ZeroMQ drops
  the connection of a sender that starts one, before allocating it, and the sender
  reconnects; the builder logs every disconnection of a sender during a run.
- DEALER to run control (daq.control.transitions) for the transitions.
- PUB bound at ``network.monitor``: one JSON snapshot about once per wall second (run,
  state, pulses, rates, lost, dead time, horizon, reactor state, events per category).

A builder that died is restarted (daq.control.supervisor) and told to resume the open run:
``begin`` with ``resume`` true rebuilds the run from its raw pulses file (daq.store.rebuild:
the event builder's state, the events file, SQL) and goes on appending to it; the first
batch of each stream it receives is flagged RESUMED, so what died with the old builder is a
BUILDER_RESTART gap at once.

Transitions: ``rejoin`` {"run": N, "stream": name, "incarnation": k} announces that the
sender of a stream was restarted and rejoins the open live run as incarnation k (run control
sends it before the restarted process's begin); a batch of an incarnation never announced is
refused. ``begin`` {"run": N} opens the run's raw files (``data_dir/raw/runNNNNNN``),
its spectrum filler and an EventBuilder, and acknowledges. Optional fields: ``streams``
(names of the streams expected, default hpge, acv, crv, reactor) and ``reactor`` ("on" or
"off": the fixed state when the reactor stream is not expected). ``end`` waits until the
end-of-run of every expected stream arrived (at most END_WAIT_S, then ends anyway and says so
in the summary; not for the streams its ``absent`` field names, whose sender is away),
builds what is left, commits, closes the raw files and acknowledges with the run summary.
``exit``, SIGTERM and SIGINT close an open live run once the end-of-run of every expected
stream arrived (its senders are stopping too, and their last batches are on the way),
or after ``builder.drain_timeout_s``, then exit 0; the summary names the streams that did not
end (``no_eor``). A replay's open run is closed at once with what has arrived.

Every message received is decoded; undecodable ones are counted as rejected (in the summary
and in SQL under the stream name "undecodable") and never stop the builder. The first of them
is logged in full, then one line per REJECT_LOG_INTERVAL_S says how many more there were
(daq.core.ratelog), and the close of a run writes what is still untold: a flood of junk
costs a few lines of log, not a line each.
Decoded batches are written to the raw file as received (a block per flush, see
daq.formats.rawfile), then given to the EventBuilder. Before that, a live run refuses what
only a live builder can judge (daq.formats.wire.REFUSALS): a watermark ahead of the DAQ clock
(daq.build.clock) by more than ``builder.max_clock_lead_s``, and an incarnation run control
did not announce; the refusal is a flag of the recorded batch, so a replay refuses it too.

Replay (daq.replay) drives the same process with more ``begin`` fields: ``replay`` true (no
raw files are written, spectra are committed once, at the end, and the builder advances
every REPLAY_BURST_PULSES pulses), ``tag`` (the SQL tag of the results, default "") and
``variants`` (a list of {"tag", "overrides"}: one EventBuilder and spectrum filler per
entry, each with its configuration overrides, all fed the same batches: a window scan in
one pass). Its ``end`` carries ``expect`` {stream name: messages sent}: the run ends once
that many arrived, instead of waiting for end-of-run messages a damaged file may lack.
"""

from __future__ import annotations

import errno
import json
import logging
import resource
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import zmq
from sqlalchemy.exc import SQLAlchemyError
from zmq.utils.monitor import recv_monitor_message

from daq.build.clock import DaqClock
from daq.build.eventbuilder import EventBuilder
from daq.build.increments import StreamDelta, dominant_state
from daq.build.rates import RateMeter
from daq.control.transitions import ControlClient
from daq.core.config import Config
from daq.core.errors import DiskFull, NudaqError, RawFileError, WireError
from daq.core.overrides import with_overrides
from daq.core.paths import db_url
from daq.core.ratelog import RateLimitedLog
from daq.core.records import (
    DATA_STREAM_NAMES,
    PULSE_DTYPE,
    RUN_STREAMS,
    STREAM_NAMES,
    Stream,
    stream_by_name,
)
from daq.formats.rawfile import PULSES, RawFileInfo, RawWriter, raw_path
from daq.formats.wire import (
    HEADER,
    KIND_BOR,
    REFUSED_AHEAD_OF_CLOCK,
    REFUSED_UNANNOUNCED_RESTART,
    RESUMED,
    Batch,
    decode,
)
from daq.kernels.warmup import warm_up
from daq.processes.common import StopFlag, base_parser, common_setup
from daq.store.durable import DurableWriter
from daq.store.filler import SPECTRUM, SpectrumFiller, apply_increment
from daq.store.rebuild import rebuild, run_prefix
from daq.store.session import make_engine

log = logging.getLogger(__name__)

END_WAIT_S = 30.0
"""Longest wait for missing end-of-run messages after the end transition (wall s)."""
RECV_HWM = 100
"""Batches queued in the PULL socket before the readouts feel backpressure."""
BURST = 500
"""Messages read before the builder advances, commits and looks at transitions again."""
DRAIN_S = 2.0
"""Longest time spent reading what is already queued when a run is closed (wall s); at an exit
the builder first reads until every stream ended (``builder.drain_timeout_s``)."""
MONITOR_INTERVAL_S = 1.0
POLL_MS = 100
UNDECODABLE = "undecodable"
REPLAY_BURST_PULSES = 1 << 20
"""Pulses read in replay before the builder advances (bounds what it holds at once)."""
REJECT_LOG_INTERVAL_S = 10.0
"""Longest silence of the log about rejected messages and disconnected senders (wall s)."""


def max_message_bytes(max_pulses: int) -> int:
    """Largest legal message (bytes): the wire header and ``max_pulses`` pulse records.

    ZeroMQ's MAXMSGSIZE bounds each message part, and the payload of a batch of at most
    ``max_pulses`` pulses is below this, its header too."""
    return HEADER.size + max_pulses * PULSE_DTYPE.itemsize


@dataclass(frozen=True)
class RunBegin:
    """What a ``begin`` transition asks of the builder (see the module doc for its fields)."""

    run: int
    streams: tuple[Stream, ...]
    reactor_on: bool | None
    variants: list[dict]
    replay: bool
    resume: bool

    @classmethod
    def of(cls, transition: dict) -> RunBegin:
        """The begin of a transition message (KeyError/ValueError when malformed)."""
        names = transition.get("streams")
        reactor = transition.get("reactor")
        return cls(
            run=int(transition["run"]),
            streams=tuple(stream_by_name(n) for n in names) if names else RUN_STREAMS,
            reactor_on=None if reactor is None else reactor == "on",
            variants=transition.get("variants") or [{"tag": transition.get("tag", "")}],
            replay=bool(transition.get("replay", False)),
            resume=bool(transition.get("resume", False)),
        )


@dataclass
class Variant:
    """One configuration being built: its event builder and the filler of its SQL tag."""

    tag: str
    builder: EventBuilder
    filler: SpectrumFiller


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB): VmHWM, which unlike ru_maxrss does not
    carry over the forking parent's size across exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RunRecorder:
    """One open run: its event builders (one per variant) and their spectrum fillers.

    What is recorded besides SQL and when SQL is committed is the difference between a live
    run (LiveRecorder) and a replay (ReplayRecorder); building is the same code in both.
    """

    burst_pulses: int | None = None
    """Pulses read before the builder advances (None: a burst of messages, BURST)."""
    raw_file: Path | None = None

    def __init__(
        self,
        config: Config,
        engine,
        begin: RunBegin,
        writes: DurableWriter | None = None,
        variants: list[Variant] | None = None,
    ) -> None:
        self.run = begin.run
        self.config = config
        self.variants = variants or [
            self._variant(engine, writes, v.get("tag", ""), v.get("overrides", {}), begin)
            for v in begin.variants
        ]
        self.builder = self.variants[0].builder
        self.received: dict[str, int] = {}
        self.undecodable = 0
        self._undecodable_pending = 0

    def _variant(
        self, engine, writes: DurableWriter | None, tag: str, overrides: dict, begin: RunBegin
    ) -> Variant:
        config = with_overrides(self.config, overrides) if overrides else self.config
        builder = EventBuilder(config, self.run, begin.streams, begin.reactor_on)
        filler = SpectrumFiller(engine, self.run, tag, builder.n_bins, writes)
        return Variant(tag, builder, filler)

    def add(self, batch: Batch) -> None:
        """Record one received batch and hand it to the event builders."""
        self._screen(batch)
        self._record_batch(batch)
        name = STREAM_NAMES.get(batch.stream, str(batch.stream))
        self.received[name] = self.received.get(name, 0) + 1
        for variant in self.variants:
            variant.builder.add(batch)

    def reject_undecodable(self) -> None:
        """Count a message that could not be decoded."""
        self.undecodable += 1
        self._undecodable_pending += 1
        self.received[UNDECODABLE] = self.received.get(UNDECODABLE, 0) + 1

    def advance(self, final: bool = False) -> None:
        """Build what the watermarks allow (everything if final) and store it."""
        for variant in self.variants:
            update = variant.builder.finish() if final else variant.builder.advance()
            if self._undecodable_pending:
                delta = update.streams.setdefault(UNDECODABLE, StreamDelta())
                delta.rejected_messages += self._undecodable_pending
            if variant is self.variants[0]:
                self._record_events(update.events)
            variant.filler.add(update)
        self._undecodable_pending = 0

    def tick(self) -> None:
        """Commit and flush what is due (a live run; a replay commits once, at the close)."""

    def close(self, eor_timeout: bool) -> dict:
        """Finish the run: build the rest, final commit, close the files; the run summary."""
        self.advance(final=True)
        built = time.monotonic()  # system-wide clock: the replay compares it with its own
        try:
            raw_files = self._close_files()
        except DiskFull as err:  # SQL is committed all the same; recovery closes the files
            log.error(
                "run %d: %s; its raw files are left open (nudaq recover %d closes them once"
                " the disk has room)",
                self.run,
                err,
                self.run,
            )
            raw_files = []
        for variant in self.variants:
            variant.filler.close_run(raw_files, end_ns=variant.builder.exposure_end_ns)
        summary = self.summary() | {"eor_timeout": eor_timeout} | self._closing_facts(built)
        log.info("run %d closed: %s", self.run, json.dumps(summary))
        return summary

    def _screen(self, batch: Batch) -> None:
        """Flag what only a live builder can refuse (daq.formats.wire.REFUSALS)."""

    def _record_batch(self, batch) -> None:
        """Keep a received batch besides building it (a live run's raw file)."""

    def _record_events(self, events) -> None:
        """Keep built events besides filling them (a live run's raw file)."""

    def _close_files(self) -> list[RawFileInfo]:
        """Close what was recorded; the raw files written."""
        return []

    def _closing_facts(self, built_monotonic_s: float) -> dict:
        """What the run summary adds at the close (a replay's measurements)."""
        return {}

    def summary(self) -> dict:
        """The run summary as run control and the shifter see it (of the first variant)."""
        s = self.builder.summary
        live = s["live_ns"]
        return {
            "run": self.run,
            "reactor": dominant_state(s["elapsed_ns"]),
            "live_time_s": (live["on"] + live["off"]) / 1e9,
            "live_time_s_by_reactor": {state: ns / 1e9 for state, ns in live.items()},
            "elapsed_s": sum(s["elapsed_ns"].values()) / 1e9,
            "pulses": {name: s["pulses"].get(name, 0) for name in DATA_STREAM_NAMES},
            "lost": {name: s["lost"].get(name, 0) for name in DATA_STREAM_NAMES},
            "dead_time_s": {name: ns / 1e9 for name, ns in s["dead_ns"].items()},
            "uncovered_s": {
                name: s["uncovered_ns"].get(name, 0) / 1e9 for name in DATA_STREAM_NAMES
            },
            "gaps_s": {
                name: {reason: ns / 1e9 for reason, ns in by_reason.items()}
                for name, by_reason in s["gaps_ns"].items()
            },
            "exposure_uncovered_s": sum(s["exposure_uncovered_ns"].values()) / 1e9,
            "rejections": s["rejections"],
            "events": s["events"],
            "rt_tags": s["rt_tags"],
            "missing_batches": s["missing_batches"],
            "rejected_messages": s["rejected_messages"] + self.undecodable,
            "uncalibrated": s["uncalibrated"],
            "no_eor": s["no_eor"],
            "raw_file": None if self.raw_file is None else str(self.raw_file),
        }


class LiveRecorder(RunRecorder):
    """A live run: raw files of every batch and event (daq.formats.rawfile), flushed every
    ``builder.raw_flush_interval_s``, and SQL commits every ``builder.commit_interval_s``, each
    a queued write of the builder (daq.store.durable), as is the close: the builder never
    waits for the database, and builds and records on while it is away."""

    def __init__(
        self, config: Config, engine, begin: RunBegin, data_dir: Path, writes: DurableWriter
    ) -> None:
        prefix = run_prefix(data_dir, begin.run)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        check_disk(prefix.parent, config.alarms.disk_critical_GB)
        fsync_s = config.builder.raw_fsync_interval_s
        self.clock = DaqClock(config.sim.speed, config.builder.max_clock_lead_s)
        self.incarnations: dict[int, int] = {}
        """The newest incarnation run control announced, per stream (0 if none)."""
        self.resuming: set[int] = set()
        """Streams whose first batch since a resume is still to come (flagged RESUMED)."""
        if begin.resume:
            rebuilt = rebuild(
                config,
                engine,
                begin.run,
                prefix,
                begin.streams,
                begin.reactor_on,
                fsync_s,
                writes,
            )
            variant = Variant("", rebuilt.builder, rebuilt.filler)
            super().__init__(config, engine, begin, writes, [variant])
            self.raw = rebuilt.writer
            self.incarnations = dict(rebuilt.incarnations)
            self.resuming = set(begin.streams)
            if rebuilt.last_watermark_ns is not None:
                self.clock.anchor(rebuilt.last_watermark_ns, time.monotonic())
        else:
            super().__init__(config, engine, begin, writes)
            self.raw = RawWriter(prefix, begin.run, config.snapshot(), fsync_interval_s=fsync_s)
        self.raw_file = raw_path(prefix, PULSES)
        self._disk_log = RateLimitedLog(log, REJECT_LOG_INTERVAL_S)
        now = time.monotonic()
        self._next_commit = now + config.builder.commit_interval_s
        self._next_flush = now + config.builder.raw_flush_interval_s

    def tick(self) -> None:
        """Commit spectra (queue the increment) and flush raw files when their intervals are
        due."""
        now = time.monotonic()
        if now >= self._next_commit:
            self._next_commit = now + self.config.builder.commit_interval_s
            self.variants[0].filler.commit()
        if now >= self._next_flush:
            self._check_disk()
            with _raw_writes(self.raw_file):
                self.raw.flush()
            self._next_flush = now + self.config.builder.raw_flush_interval_s

    def rejoin(self, stream: Stream, incarnation: int) -> None:
        """Run control announced that ``stream``'s sender rejoins as ``incarnation``."""
        self.incarnations[stream] = max(incarnation, self.incarnations.get(stream, 0))

    def _screen(self, batch: Batch) -> None:
        now = time.monotonic()
        if batch.stream in self.resuming:
            self.resuming.discard(batch.stream)
            batch.kind |= RESUMED
        if batch.incarnation > self.incarnations.get(batch.stream, 0):
            batch.kind |= REFUSED_UNANNOUNCED_RESTART
        if self.clock.ahead(batch.watermark_ns, now):
            batch.kind |= REFUSED_AHEAD_OF_CLOCK
        elif batch.base_kind == KIND_BOR and not batch.refusal:
            self.clock.anchor(batch.watermark_ns, now)

    def _check_disk(self) -> None:
        """Before every flush: DiskFull below ``alarms.disk_critical_GB`` free (so the run
        stops while its files can still be closed), a warning below ``alarms.disk_low_GB``."""
        alarms = self.config.alarms
        free_GB = check_disk(self.raw_file.parent, alarms.disk_critical_GB)
        if free_GB < alarms.disk_low_GB:
            self._disk_log.log(
                "disk low",
                "run %d: free disk space %.3f GB is below alarms.disk_low_GB (%g GB); the run"
                " stops at %g GB",
                self.run,
                free_GB,
                alarms.disk_low_GB,
                alarms.disk_critical_GB,
            )

    def _record_batch(self, batch) -> None:
        with _raw_writes(self.raw_file):
            self.raw.write_batch(batch)

    def _record_events(self, events) -> None:
        with _raw_writes(self.raw_file):
            self.raw.write_events(events)

    def _close_files(self) -> list[RawFileInfo]:
        with _raw_writes(self.raw_file):
            return self.raw.close()


def check_disk(directory: Path, floor_GB: float) -> float:
    """The free space (GB) of ``directory``'s disk; DiskFull below ``floor_GB``."""
    free_GB = shutil.disk_usage(directory).free / 1e9
    if free_GB < floor_GB:
        raise DiskFull(
            f"free disk space {free_GB:.3f} GB in {directory} is below"
            f" alarms.disk_critical_GB ({floor_GB:g} GB)"
        )
    return free_GB


@contextmanager
def _raw_writes(path: Path) -> Iterator[None]:
    """A raw file that cannot be written (no space left, or its disk failed) is DiskFull:
    the run stops instead of the builder."""
    try:
        yield
    except (OSError, RawFileError) as err:
        if isinstance(err, OSError) and err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
            raise
        raise DiskFull(f"cannot write {path}: {err}") from err


class ReplayRecorder(RunRecorder):
    """A replay: the variants asked for, no raw files, one SQL commit at the close, and a
    summary that says what the replay cost (per-tag counts, peak memory, CPU, build time)."""

    burst_pulses = REPLAY_BURST_PULSES

    def __init__(self, config: Config, engine, begin: RunBegin) -> None:
        super().__init__(config, engine, begin)
        self._cpu_start = time.process_time()

    def _closing_facts(self, built_monotonic_s: float) -> dict:
        return {
            "tags": {v.tag: self._counts(v.builder) for v in self.variants},
            "received": dict(self.received),
            "peak_rss_mb": peak_rss_mb(),
            "cpu_s": time.process_time() - self._cpu_start,
            "built_monotonic_s": built_monotonic_s,
        }

    @staticmethod
    def _counts(builder: EventBuilder) -> dict:
        s = builder.summary
        return {"events": s["events"], "rt_tags": s["rt_tags"]}


class BuilderProcess:
    """The sockets, the transition handling and the main loop."""

    def __init__(
        self,
        config: Config,
        data_dir: Path,
        db_url: str,
        ctx: zmq.Context,
        name: str = "builder",
        recv_hwm: int = RECV_HWM,
    ) -> None:
        self.config = config
        self.data_dir = data_dir
        self.engine = make_engine(db_url)
        self.writes = DurableWriter(
            self.engine, data_dir, name, {SPECTRUM: apply_increment}, config.database
        )
        self.pull = ctx.socket(zmq.PULL)
        self.pull.setsockopt(zmq.RCVHWM, recv_hwm)
        self.pull.setsockopt(zmq.LINGER, 0)
        self.pull.setsockopt(zmq.MAXMSGSIZE, max_message_bytes(config.builder.max_batch_pulses))
        self.pull_events = self.pull.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.pull.bind(config.endpoint("builder_data", data_dir))
        self.pub = ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.bind(config.endpoint("monitor", data_dir))
        self.control = ControlClient(ctx, config.endpoint("transitions", data_dir), name)
        self.recorder: RunRecorder | None = None
        self.ending: tuple[dict, float] | None = None
        self.expected: dict[str, int] | None = None
        self.absent: set[str] = set()
        """Streams whose sender is away at the end of the run: no end-of-run to wait for."""
        self.last_summary: dict | None = None
        self.exit_requested = False
        self._next_monitor = 0.0
        self.rates = RateMeter()
        self.rejections = RateLimitedLog(log, REJECT_LOG_INTERVAL_S)
        self.disconnections = RateLimitedLog(log, REJECT_LOG_INTERVAL_S, level=logging.INFO)

    # -- main loop ------------------------------------------------------------------------------
    def serve(self, stop: StopFlag) -> None:
        """Run until SIGTERM/SIGINT or the exit transition."""
        poller = zmq.Poller()
        poller.register(self.control.socket, zmq.POLLIN)
        poller.register(self.pull_events, zmq.POLLIN)
        reading = False
        while not stop and not self.exit_requested:
            if (self.recorder is not None) != reading:
                reading = not reading
                if reading:
                    poller.register(self.pull, zmq.POLLIN)
                else:
                    poller.unregister(self.pull)
            events = dict(poller.poll(POLL_MS))
            try:
                if self.pull in events:
                    self._read_data()
                if self.control.socket in events:
                    self._read_transitions()
                if self.pull_events in events:
                    self._read_pull_events()
                if self.recorder is not None:
                    self.recorder.tick()
                    self._maybe_end()
            except DiskFull as err:
                self._stop_run(str(err))
            self._publish()
        if self.recorder is not None:
            log.info("stop signal: ending run %d", self.recorder.run)
            self._end_run(at_exit=True)

    def _stop_run(self, reason: str) -> None:
        """Close the open run at once (what can be closed of its files: the disk may refuse
        even that) and ask run control to end it on every process."""
        run = self.recorder.run
        log.error("run %d stops: %s", run, reason)
        self._end_run()
        self.control.send({"type": "request", "cmd": "stop", "run": run, "reason": reason})

    def _read_data(self) -> None:
        recorder = self.recorder
        pulses = 0
        for _ in range(BURST):
            try:
                parts = self.pull.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            try:
                batch = decode(parts)
            except WireError as err:
                recorder.reject_undecodable()
                self.rejections.log(
                    "rejected undecodable messages",
                    "run %d: rejected an undecodable message: %s",
                    recorder.run,
                    err,
                )
                continue
            recorder.add(batch)
            pulses += len(batch.pulses)
            if recorder.burst_pulses is not None and pulses >= recorder.burst_pulses:
                break
        recorder.advance()

    def _read_pull_events(self) -> None:
        """Log the senders ZeroMQ disconnected during a run (at INFO: a replay's reader leaves
        before its run closes)."""
        while self.pull_events.poll(0, zmq.POLLIN):
            recv_monitor_message(self.pull_events)
            if self.recorder is not None:
                self.disconnections.log(
                    "disconnected data senders",
                    "run %d: a data sender was disconnected (it went away, or it sent a"
                    " message part over the %d-byte limit)",
                    self.recorder.run,
                    max_message_bytes(self.config.builder.max_batch_pulses),
                )

    def _drain(self, at_exit: bool = False) -> bool:
        """Read what is queued before the run is closed; True if end-of-run messages were
        waited for and did not all come.

        At an exit of a live run (``at_exit``: SIGTERM, SIGINT, the exit transition) its
        senders are stopping too, and their last batches and end-of-run are on their way:
        read until every expected stream's end-of-run arrived, for at most
        ``builder.drain_timeout_s``, committing and flushing as usual meanwhile. Then read
        what is already queued, for at most DRAIN_S.
        """
        recorder = self.recorder
        wait = at_exit and isinstance(recorder, LiveRecorder)
        if wait and not recorder.builder.eor_received:
            timeout_s = self.config.builder.drain_timeout_s
            log.info(
                "run %d: reading until every stream ended (at most %g s)", recorder.run, timeout_s
            )
            deadline = time.monotonic() + timeout_s
            while not recorder.builder.eor_received:
                left_ms = int(1000 * (deadline - time.monotonic()))
                if left_ms <= 0:
                    break
                if self.pull.poll(min(left_ms, POLL_MS), zmq.POLLIN):
                    self._read_data()
                recorder.tick()
        deadline = time.monotonic() + DRAIN_S
        while time.monotonic() < deadline and self.pull.poll(0, zmq.POLLIN):
            self._read_data()
        return wait and not recorder.builder.eor_received

    # -- transitions ----------------------------------------------------------------------------
    def _read_transitions(self) -> None:
        while True:
            try:
                transition = self.control.poll(0)
            except ValueError as err:
                log.warning("ignored a message from run control: %s", err)
                continue
            if transition is None:
                return
            log.info("transition %s", transition)
            handler = {
                "begin": self._begin,
                "rejoin": self._rejoin,
                "end": self._end,
                "exit": self._exit,
            }
            try:
                handler[transition["type"]](transition)
            except (NudaqError, ValueError, KeyError, OSError) as err:
                log.error("transition %s failed: %s", transition.get("type"), err)
                self.control.ack(transition, ok=False, error=str(err))

    def _begin(self, transition: dict) -> None:
        begin = RunBegin.of(transition)
        if self.recorder is not None:
            log.warning(
                "begin of run %d while run %d is open: ending it", begin.run, self.recorder.run
            )
            self._end_run()
        if begin.replay:
            self.recorder = ReplayRecorder(self.config, self.engine, begin)
        else:
            self.recorder = LiveRecorder(
                self.config, self.engine, begin, self.data_dir, self.writes
            )
        expected = ", ".join(STREAM_NAMES[s] for s in begin.streams)
        log.info("run %d begins; expecting %s", begin.run, expected)
        self.control.ack(transition, run=begin.run)

    def _rejoin(self, transition: dict) -> None:
        run = int(transition["run"])
        if not isinstance(self.recorder, LiveRecorder) or self.recorder.run != run:
            raise ValueError(f"no live run {run} is open")
        stream = stream_by_name(transition["stream"])
        self.recorder.rejoin(stream, int(transition["incarnation"]))
        log.info(
            "run %d: %s rejoins as incarnation %s",
            run,
            stream.name.lower(),
            transition["incarnation"],
        )
        self.control.ack(transition)

    def _end(self, transition: dict) -> None:
        run = int(transition.get("run", -1))
        if self.recorder is None:
            if self.last_summary is not None and self.last_summary["run"] == run:
                self.control.ack(transition, **self.last_summary)
                return
            raise ValueError(f"no run {run} is open")
        if run != self.recorder.run:
            raise ValueError(f"run {self.recorder.run} is open, not run {run}")
        self.ending = (transition, time.monotonic() + END_WAIT_S)
        self.expected = transition.get("expect")
        self.absent = set(transition.get("absent", ()))

    def _exit(self, transition: dict) -> None:
        if self.recorder is not None:
            self._end_run(at_exit=True)
        self.exit_requested = True
        self.control.ack(transition)

    def _maybe_end(self) -> None:
        if self.ending is None:
            return
        _, deadline = self.ending
        timed_out = time.monotonic() > deadline
        if self.expected is not None:
            received = self.recorder.received
            arrived = all(received.get(name, 0) >= n for name, n in self.expected.items())
        else:
            arrived = self.recorder.builder.eor_missing <= self.absent
        if not (arrived or timed_out):
            return
        if timed_out:
            log.warning("run %d: end-of-run missing after %.0f s", self.recorder.run, END_WAIT_S)
        self._end_run(eor_timeout=timed_out)

    def _end_run(self, eor_timeout: bool = False, at_exit: bool = False) -> None:
        """Close the open run with what has arrived; answer a pending end transition.

        ``at_exit``: the builder is exiting, so it first waits for the end-of-run of every
        stream (_drain); the summary's ``eor_timeout`` says if that wait ran out, its
        ``no_eor`` which streams did not end.
        """
        eor_timeout = self._drain(at_exit) or eor_timeout
        self._read_pull_events()
        self.rejections.flush()
        self.disconnections.flush()
        recorder, pending = self.recorder, self.ending
        self.recorder, self.ending, self.expected = None, None, None
        try:
            self.last_summary = recorder.close(eor_timeout)
        except (SQLAlchemyError, NudaqError, OSError) as err:
            log.error("run %d could not be closed: %s", recorder.run, err)
            if pending is not None:
                self.control.ack(pending[0], ok=False, error=str(err))
            return
        if pending is not None:
            self.control.ack(pending[0], **self.last_summary)

    # -- monitoring -----------------------------------------------------------------------------
    def _publish(self) -> None:
        now = time.monotonic()
        if now < self._next_monitor:
            return
        self._next_monitor = now + MONITOR_INTERVAL_S
        self.pub.send_string(json.dumps(self.snapshot()))

    def snapshot(self) -> dict:
        """The monitoring snapshot: what a shifter's status line shows."""
        recorder = self.recorder
        if recorder is None:
            self.rates.clear()
            return {"time": time.time(), "state": "idle", "run": None, "last": self.last_summary}
        s = recorder.builder.summary
        rates = self.rates.update(s["complete_ns"], s["pulses"])
        elapsed = sum(s["elapsed_ns"].values())
        live = sum(s["live_ns"].values())
        return {
            "time": time.time(),
            "state": "ending" if self.ending else "running",
            "run": recorder.run,
            "pulses": s["pulses"],
            "complete_ns": s["complete_ns"],
            "rates_hz": rates,
            "lost": s["lost"],
            "dead_ns": s["dead_ns"],
            "dead_fraction": 1 - live / elapsed if elapsed else 0.0,
            "live_time_s": live / 1e9,
            "elapsed_s": elapsed / 1e9,
            "uncovered_s": {name: ns / 1e9 for name, ns in s["uncovered_ns"].items()},
            "exposure_uncovered_s": sum(s["exposure_uncovered_ns"].values()) / 1e9,
            "horizon_ns": s["horizon_ns"],
            "reactor": {True: "on", False: "off", None: "?"}[s["reactor_on"]],
            "power_MW": recorder.builder.power_MW,
            "events": s["events"],
            "rejected_messages": s["rejected_messages"] + recorder.undecodable,
            "missing_batches": s["missing_batches"],
        }

    def close(self) -> None:
        """Close every socket; store the queued writes (or journal them); close the engine."""
        self.pull.disable_monitor()
        for sock in (self.pull_events, self.pull, self.pub):
            sock.close(0)
        self.control.close()
        self.writes.close()
        self.engine.dispose()


def main(argv: list[str] | None = None) -> int:
    """Main of the builder service."""
    parser = base_parser("nudaq event builder: batches in, spectra and raw files out")
    parser.add_argument("--name", default="builder", help="process and log name")
    parser.add_argument(
        "--recv-hwm", type=int, default=RECV_HWM, help="messages queued before backpressure"
    )
    args = parser.parse_args(argv)
    config, data_dir = common_setup(args, args.name)
    stop = StopFlag()
    ctx = zmq.Context()
    url = db_url(args.db, data_dir)
    process = BuilderProcess(config, data_dir, url, ctx, args.name, args.recv_hwm)
    warm_up()  # not in the first build; a replay's clock starts at the begin, after this
    log.info("builder up (pid in logs), data dir %s", data_dir)
    try:
        process.serve(stop)
    finally:
        process.close()
        ctx.term()
    return 0
