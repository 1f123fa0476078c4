"""The event builder's core: batches in, tagged HPGe events and storage increments out.

No I/O: the live builder process, the replay and the fast simulation all feed batches
(daq.formats.wire.Batch) to one ``EventBuilder`` and store the ``BuildUpdate``s it returns.

Ordering. Each stream's batches are applied strictly in sequence order (seq 0 is the
begin-of-run message, whose watermark is the stream's start time; the end-of-run message makes
the stream complete forever). A sender that died and was restarted rejoins as a new
*incarnation* (daq.formats.wire: the high bits of seq): once the new incarnation's BOR has
arrived, the old one is over (what it holds is applied, its missing batches are a sequence
gap) and its time from its last applied watermark to the new BOR's is a RESTART gap; batches
of an older incarnation arriving after that are refused. An end-of-run is final: no
incarnation rejoins after it. A batch flagged RESUMED (the first of its stream a restarted
builder received) declares the batches missing before it lost at once (BUILDER_RESTART).

A stream is complete below its watermark, so an HPGe pulse at t can be built once every
window around it is complete. The *horizon*

    H = min(wm_hpge, wm_acv - ac_window_ns, wm_crv - crv_post_ns, wm_reactor)

(over the expected streams) is the time below which every HPGe pulse is built. Nothing built
depends on when a batch arrived, only on its content: the sum of the updates is the same for
any arrival order, so a live run and its replay give bit-identical spectra and exposure.

Tags of an HPGe pulse at t (daq.core.records): AC if an AC pulse with adc >= ac_threshold_adc lies
in [t - ac_window_ns, t + ac_window_ns]; CRV if a CRV pulse with adc >= crv_threshold_adc lies
in [t - crv_pre_ns, t + crv_post_ns]; RT if the ADC flagged a random trigger; REACTOR_ON from
the last reactor reading at or before t (the first reading if none came before t).

Exposure. The HPGe stream's time from its start to its stop is split at reactor changes into
elapsed ns per reactor state, counted as the horizon passes it. HPGe dead time of a batch goes
to the reactor state just before that batch's watermark.

Coverage (daq.build.coverage). Every loss becomes a gap of its stream, from the stream's last
good watermark: a batch's own declared gap (to its ``covered_from_ns``: lost serial frames, a
reconnect, a readout overflow), a sequence gap or a refused batch (to the next good batch's
watermark), the time before a veto stream started or after it ended (a missing end-of-run, a
drain timeout). HPGe gaps are dead time, veto gaps blind every HPGe time whose window reaches
into them; their union is uncovered time, taken out of the exposure, and HPGe events inside it
are tagged UNCOVERED and fill only that spectrum. Gaps depend only on the batches' content, so
a replay reproduces them exactly.

Defences. A batch is refused, and its slot in the sequence becomes a REJECTED gap, when its
content is implausible: more than ``builder.max_batch_pulses`` pulses, pulses out of order or
at or after its own watermark, a watermark behind the stream's or ahead of it by more than
``builder.max_lead_s``, or a refusal flag (daq.formats.wire.REFUSALS) that the live builder
set and recorded (a watermark ahead of the DAQ clock, an incarnation run control did not
announce: checks a replay could not make again). A refused batch of a new incarnation takes
no slot: it cannot end the incarnation that is running. A sequence number more than
``max_pending`` ahead is refused without taking a slot, so a forged message cannot skip the
genuine ones. Rejections are counted per reason and logged at most once per reason per
interval (daq.core.ratelog).

Memory stays flat: built HPGe pulses are dropped, and so are veto pulses that no later HPGe
pulse can reach (older than H minus their window's reach into the past).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from daq.build.coverage import Gap, Uncovered
from daq.build.increments import (
    REACTOR_STATES,
    BuildUpdate,
    ReactorChange,
    StreamDelta,
    event_counts,
    rt_tag_counts,
)
from daq.build.order import StreamOrder, pulses_in_order
from daq.build.reactor import on_at, power_MW, reading_index
from daq.build.windows import veto_windows
from daq.core.config import Config
from daq.core.ratelog import RateLimitedLog
from daq.core.records import (
    EVENT_DTYPE,
    FLAG_REACTOR_ON,
    FLAG_RT,
    LOSS_NAMES,
    PULSE_DTYPE,
    RUN_STREAMS,
    STREAM_NAMES,
    TAG_AC,
    TAG_CRV,
    TAG_REACTOR_ON,
    TAG_RT,
    TAG_UNCOVERED,
    VETO_STREAMS,
    VETO_TAGS,
    Loss,
    Stream,
)
from daq.core.units import INF_NS
from daq.formats.wire import INCARNATION_SHIFT, KIND_BOR, KIND_EOR, Batch
from daq.kernels.arrays import times_at_least
from daq.kernels.histogram import calibrate, fill_histogram
from daq.kernels.tagging import set_tag, tag_window

log = logging.getLogger(__name__)

LOG_INTERVAL_S = 10.0
"""Rejections of one reason are logged at most once per this interval (wall s)."""
MAX_PENDING_BATCHES = 1000
"""Out-of-order batches held per stream; beyond, the oldest sequence gap is declared missing
(a batch the builder rejected, e.g. corrupted, would otherwise stall the run until its end)."""


def _stream_name(stream: int) -> str:
    try:
        return STREAM_NAMES[Stream(stream)]
    except ValueError:
        return f"stream{stream}"


@dataclass
class _StreamState:
    """Ordering and buffering of one expected stream."""

    stream: Stream
    next_seq: int = 0
    pending: dict[int, Batch | None] = field(default_factory=dict)
    """Batches of the current incarnation that arrived early, by seq; None for a refused batch
    (its slot is a gap)."""
    incarnation: int = 0
    """The sender's incarnation whose batches are being applied."""
    later: dict[int, Batch] = field(default_factory=dict)
    """Batches of newer incarnations, by seq, until one of their BORs ends the current one."""
    loss: Loss = Loss.NONE
    """Why the time up to the next good batch's watermark is lost (missing or refused batches)."""
    eor_seq: int | None = None
    order: StreamOrder = field(default_factory=StreamOrder)
    start_ns: int | None = None
    stop_ns: int | None = None
    ended: bool = False
    chunks: list[np.ndarray] = field(default_factory=list)
    delta: StreamDelta = field(default_factory=StreamDelta)

    @property
    def watermark_ns(self) -> int:
        """Complete below this time (ns); +infinity once ended."""
        return INF_NS if self.ended else self.order.complete_ns

    def buffer(self) -> np.ndarray:
        """The buffered records as one array (merged in place)."""
        if len(self.chunks) != 1:
            self.chunks = [np.concatenate(self.chunks)] if self.chunks else []
        return self.chunks[0] if self.chunks else np.zeros(0, self._dtype())

    def keep_from(self, index: int) -> None:
        """Drop the buffered records before ``index``."""
        self.chunks = [self.buffer()[index:]]

    def _dtype(self) -> np.dtype:
        return np.dtype(np.int64) if self.stream in VETO_STREAMS else PULSE_DTYPE


class EventBuilder:
    """Orders batches per stream, tags HPGe pulses, fills spectra and counts exposure.

    ``streams`` are the streams expected in this run (HPGe is required); ``reactor_on`` is the
    fixed reactor state when REACTOR is not expected (and the fallback if the reactor stream
    ends without a single reading); ``max_pending`` is how many out-of-order batches a stream
    may hold before its oldest sequence gap is declared missing.
    """

    def __init__(
        self,
        config: Config,
        run: int,
        streams: tuple[Stream, ...] = RUN_STREAMS,
        reactor_on: bool | None = None,
        max_pending: int = MAX_PENDING_BATCHES,
    ) -> None:
        streams = tuple(Stream(s) for s in streams)
        if Stream.HPGE not in streams:
            raise ValueError("the HPGe stream must be among the expected streams")
        if Stream.REACTOR not in streams and reactor_on is None:
            raise ValueError("reactor_on is needed when the reactor stream is not expected")
        self.config = config
        self.run = run
        self.max_pending = max_pending
        b = config.builder
        self.max_batch_pulses = b.max_batch_pulses
        self.max_lead_ns = int(b.max_lead_s * 1e9)
        self._windows = {s: w for s, w in veto_windows(b).items() if s in streams}
        """The veto streams of this run and their windows (daq.build.windows)."""
        self._thresholds = {Stream.ACV: b.ac_threshold_adc, Stream.CRV: b.crv_threshold_adc}
        self._gain = np.asarray(config.calibration.gain_keV_per_adc, dtype=np.float64)
        self._offset = np.asarray(config.calibration.offset_keV, dtype=np.float64)
        self._bin_width_keV = config.spectrum.bin_width_keV
        self.n_bins = config.spectrum.n_bins
        self._streams = {s: _StreamState(s) for s in streams}
        self._fixed_on = bool(reactor_on)
        self._horizon = -INF_NS
        self._exposed_ns: int | None = None
        self._state_on: bool | None = None
        self._dead: list[tuple[int, int, int]] = []
        """(watermark, dead ns, covered span ns) of each HPGe batch not yet exposed."""
        self._uncovered = Uncovered()
        self._gaps: list[Gap] = []
        self._gap_ns: dict[str, dict[str, int]] = {}
        """Uncovered ns per stream and reason, for the summary."""
        self._rejections: dict[str, int] = {}
        self._log = RateLimitedLog(log, LOG_INTERVAL_S)
        self._other: dict[str, StreamDelta] = {}
        self._total = BuildUpdate.empty(self.n_bins)
        self._complete_ns: dict[str, int] = {}
        self._uncalibrated = 0
        self._no_eor: list[str] = []
        self._finished = False

    # -- batches in ---------------------------------------------------------------------------
    def add(self, batch: Batch) -> None:
        """Accept one batch: applied now if contiguous, held if it arrived early, else rejected."""
        st = self._streams.get(batch.stream)
        reason = self._invalid(batch, st)
        if reason:
            self._reject(batch, reason)
            return
        refusal = self._implausible(batch)
        if batch.incarnation > st.incarnation:
            if refusal:
                self._reject(batch, refusal)
                return
            st.later[batch.seq] = batch
            self._rejoin(st, forced=len(st.later) > self.max_pending)
            return
        if refusal:
            self._reject(batch, refusal)
            st.pending[batch.seq] = None
        else:
            st.pending[batch.seq] = batch
            if batch.base_kind == KIND_EOR:
                self._end_at(st, batch.seq)
        if batch.resumed:  # what came before it and is missing died with a builder
            while st.next_seq <= batch.seq:
                self._skip_gap(st, Loss.BUILDER_RESTART)
        self._apply_contiguous(st)
        while len(st.pending) > self.max_pending:
            self._skip_gap(st)

    def _end_at(self, st: _StreamState, eor_seq: int) -> None:
        """The stream ends at this seq: what it held beyond was never part of it."""
        st.eor_seq = eor_seq
        for seq in [seq for seq in st.pending if seq > eor_seq]:
            after = st.pending.pop(seq)
            if after is not None:
                self._reject(after, "after the end-of-run")

    def _invalid(self, batch: Batch, st: _StreamState | None) -> str:
        if st is None:
            return "stream not expected in this run"
        if self._finished:
            return "arrived after the run was finished"
        if batch.run != self.run:
            return "belongs to another run"
        if (batch.number == 0) != (batch.base_kind == KIND_BOR):
            return "message number 0 is the begin-of-run, and only it"
        if batch.incarnation < st.incarnation:
            return "from an earlier incarnation of its sender"
        if batch.seq < st.next_seq or batch.seq in st.pending or batch.seq in st.later:
            return "duplicate sequence number"
        if st.eor_seq is not None and batch.seq > st.eor_seq:
            return "after the end-of-run"
        if batch.incarnation > st.incarnation:
            if batch.number >= self.max_pending:
                return "sequence number beyond the pending window of a new incarnation"
            return ""
        if batch.seq >= st.next_seq + self.max_pending and batch.seq != self._continues(st):
            return "sequence number beyond the pending window"
        return ""

    @staticmethod
    def _continues(st: _StreamState) -> int:
        """The seq that continues what the stream holds: only a stream that keeps sending in
        order slides its pending window past a gap (a lone far-future seq never does)."""
        return max(st.pending, default=st.next_seq - 1) + 1

    def _implausible(self, batch: Batch) -> str:
        """Why a batch's content cannot be taken ("" if it can): its slot becomes a gap."""
        if batch.refusal:
            return f"refused by the live builder: {batch.refusal}"
        pulses = batch.pulses
        if len(pulses) > self.max_batch_pulses:
            return "more pulses than builder.max_batch_pulses"
        if pulses.dtype != PULSE_DTYPE:
            return "pulses of another dtype"
        t = pulses["t_ns"]
        if not pulses_in_order(t):
            return "pulses not time-ordered"
        if len(t) and t[-1] >= batch.watermark_ns:
            return "a pulse at or after the batch's watermark"
        if batch.gap != Loss.NONE and batch.covered_from_ns > batch.watermark_ns:
            return "covered from after its watermark"
        return ""

    def _reject(self, batch: Batch, reason: str, detail: str = "") -> None:
        """Count and log a refused batch; ``reason`` is a fixed phrase (the counter's key),
        ``detail`` the batch's particulars."""
        name = _stream_name(batch.stream)
        st = self._streams.get(batch.stream)
        delta = st.delta if st is not None else self._other.setdefault(name, StreamDelta())
        delta.rejected_messages += 1
        key = f"{name}: {reason}"
        self._rejections[key] = self._rejections.get(key, 0) + 1
        self._log.log(
            key,
            "run %d: rejected %s batch seq %d: %s%s",
            self.run,
            name,
            batch.seq,
            reason,
            f" ({detail})" if detail else "",
        )

    def _rejoin(self, st: _StreamState, forced: bool = False) -> None:
        """Switch to the oldest newer incarnation whose BOR arrived (``forced``: to the oldest
        newer incarnation, BOR or not): the current one is over, what it holds is applied,
        and the time up to the new incarnation's first batch is a RESTART gap."""
        while starts := [seq for seq, b in st.later.items() if forced or b.number == 0]:
            first = min(starts)
            while st.pending:
                self._skip_gap(st)
            st.incarnation = first >> INCARNATION_SHIFT
            st.next_seq = first
            for seq in sorted(st.later):
                batch = st.later.pop(seq)
                if batch.incarnation < st.incarnation:
                    self._reject(batch, "from an earlier incarnation of its sender")
                elif batch.incarnation == st.incarnation:
                    st.pending[seq] = batch
                    if batch.base_kind == KIND_EOR:
                        self._end_at(st, seq)
                else:
                    st.later[seq] = batch
            st.loss = Loss.RESTART
            self._log.log(
                f"{STREAM_NAMES[st.stream]}: restarts",
                "run %d: %s rejoined as incarnation %d",
                self.run,
                STREAM_NAMES[st.stream],
                st.incarnation,
            )
            self._apply_contiguous(st)
            forced = False

    def _apply_contiguous(self, st: _StreamState) -> None:
        while st.next_seq in st.pending:
            self._apply(st, st.pending.pop(st.next_seq))
            st.next_seq += 1

    def _skip_gap(self, st: _StreamState, reason: Loss = Loss.SEQUENCE) -> None:
        """Declare the batches up to the first one held missing, and apply from there."""
        first = min(st.pending)
        if first > st.next_seq:
            st.delta.missing_batches += first - st.next_seq
            st.loss = st.loss or reason
            name = STREAM_NAMES[st.stream]
            self._log.log(
                f"{name}: missing batches",
                "run %d: %s batches %d..%d missing",
                self.run,
                name,
                st.next_seq,
                first - 1,
            )
        st.next_seq = first
        self._apply_contiguous(st)

    def _apply(self, st: _StreamState, batch: Batch | None) -> None:
        if batch is None:  # refused on arrival: its time is lost up to the next good batch
            st.loss = st.loss or Loss.REJECTED
            return
        pulses = batch.pulses
        t = pulses["t_ns"]
        refusal = "stream already ended" if st.ended else st.order.refusal(t, batch.watermark_ns)
        if not refusal and st.start_ns is not None:
            if batch.watermark_ns - st.order.complete_ns > self.max_lead_ns:
                refusal = "watermark ahead of the stream's by more than builder.max_lead_s"
        if refusal:
            self._reject(batch, refusal, f"watermark {batch.watermark_ns} ns")
            st.loss = st.loss or Loss.REJECTED
            return
        previous_ns = st.order.complete_ns
        if st.start_ns is None:
            st.start_ns = (
                batch.watermark_ns if batch.base_kind == KIND_BOR or not len(t) else int(t[0])
            )
            self._started(st)
            covered_from = st.start_ns
        else:
            covered_from = self._lose(st, batch)
        st.order.advance(t, batch.watermark_ns)
        if batch.base_kind == KIND_EOR:
            st.stop_ns = batch.watermark_ns
            self._ended(st)
        d = st.delta
        d.pulses += len(pulses)
        d.dropped += batch.dropped
        d.lost_frames += batch.lost_frames
        d.dead_ns += batch.dead_ns
        if st.stream == Stream.HPGE:
            span = batch.watermark_ns - max(previous_ns, covered_from)
            self._dead.append((batch.watermark_ns, batch.dead_ns, max(span, 0)))
        if not len(pulses):
            return
        if st.stream in self._windows:
            st.chunks.append(times_at_least(t, pulses["adc"], self._thresholds[st.stream]))
        else:
            st.chunks.append(pulses)

    # -- coverage -----------------------------------------------------------------------------
    def _lose(self, st: _StreamState, batch: Batch) -> int:
        """Declare the gap before an applied batch: lost batches' time (up to its watermark),
        or the batch's declared gap; the time (ns) from which the batch covers its stream."""
        lo = st.order.complete_ns
        if st.loss:
            self._gap(st, st.loss, lo, batch.watermark_ns)
            st.loss = Loss.NONE
            return batch.watermark_ns
        if batch.gap:
            covered_from = min(batch.covered_from_ns, batch.watermark_ns)
            self._gap(st, Loss(batch.gap), lo, covered_from)
            return covered_from
        return lo

    def _gap(self, st: _StreamState, reason: Loss, start_ns: int, end_ns: int) -> None:
        """Record a gap of a stream and take its time out of the HPGe time."""
        if end_ns <= start_ns:
            return
        gap = Gap(STREAM_NAMES[st.stream], reason, start_ns, end_ns)
        self._gaps.append(gap)
        st.delta.uncovered_ns += gap.length_ns
        by_reason = self._gap_ns.setdefault(gap.stream, {})
        key = LOSS_NAMES[reason]
        by_reason[key] = by_reason.get(key, 0) + gap.length_ns
        self._blind(st.stream, start_ns, end_ns)

    def _blind(self, stream: Stream, start_ns: int, end_ns: int) -> None:
        """Uncover HPGe time for a stream's lost time [start_ns, end_ns): the same time for
        the HPGe stream (dead time), every HPGe time whose window reaches into it for a veto."""
        if stream == Stream.HPGE:
            self._uncovered.add(start_ns, end_ns)
        elif stream in self._windows:
            self._uncovered.add(*self._windows[stream].reached_from(start_ns, end_ns))

    def _started(self, st: _StreamState) -> None:
        """A veto is blind before its start."""
        self._blind(st.stream, -INF_NS, st.start_ns)

    def _ended(self, st: _StreamState) -> None:
        """A veto is blind after its stop (or from its start, if it never started)."""
        st.ended = True
        if st.start_ns is None:
            self._blind(st.stream, -INF_NS, INF_NS)
        elif st.stop_ns is not None:
            self._blind(st.stream, st.stop_ns, INF_NS)

    def _end_gaps(self) -> None:
        """At the end of the run: gaps for the HPGe time a stream missed at either end (their
        time was already taken out as each veto started and ended), and the HPGe stream's own
        missing end, up to the last time any detector stream covered."""
        hpge = self._streams[Stream.HPGE]
        if hpge.start_ns is None:
            return
        if STREAM_NAMES[Stream.HPGE] in self._no_eor:
            stops = [st.stop_ns for s, st in self._streams.items() if s in self._windows]
            end = max((t for t in stops if t is not None), default=hpge.stop_ns)
            if end > hpge.stop_ns:
                self._gap(hpge, Loss.NOT_ENDED, hpge.stop_ns, end)
                hpge.stop_ns = end
        for s in self._windows:
            st = self._streams[s]
            start = hpge.stop_ns if st.start_ns is None else st.start_ns
            self._gap(st, Loss.NOT_STARTED, hpge.start_ns, min(start, hpge.stop_ns))
            stop = hpge.stop_ns if st.stop_ns is None else st.stop_ns
            self._gap(st, Loss.NOT_ENDED, max(stop, hpge.start_ns), hpge.stop_ns)

    # -- building -----------------------------------------------------------------------------
    def _limit(self) -> int:
        """The horizon allowed by the watermarks now (ns)."""
        limit = min(
            st.watermark_ns - (self._windows[s].after_ns if s in self._windows else 0)
            for s, st in self._streams.items()
        )
        reactor = self._streams.get(Stream.REACTOR)
        if reactor is not None and not reactor.ended and not len(reactor.buffer()):
            # the state before the first reading is that reading's: wait for it
            return -INF_NS
        return limit

    def advance(self) -> BuildUpdate:
        """Build every HPGe pulse below the new horizon; the increments since the last call."""
        update = BuildUpdate.empty(self.n_bins)
        horizon = max(self._horizon, self._limit())
        if horizon > self._horizon:
            self._build(horizon, update)
            self._horizon = horizon
        for st in self._streams.values():
            self._complete_ns[STREAM_NAMES[st.stream]] = st.order.complete_ns
            if st.delta != StreamDelta():
                update.streams[STREAM_NAMES[st.stream]] = st.delta
                st.delta = StreamDelta()
        for name, delta in self._other.items():
            update.streams[name] = delta
        self._other = {}
        update.gaps, self._gaps = self._gaps, []
        self._total.merge(update)
        self._total.gaps = []  # stored as they come; the summary keeps their sums (_gap_ns)
        return update

    def finish(self) -> BuildUpdate:
        """Build everything left (after all end-of-runs, or on a forced end).

        Sequence gaps still open count as missing batches, and the batches after them are
        applied; a stream without end-of-run ends at its last watermark, and the time after it
        is a NOT_ENDED gap.
        """
        for st in self._streams.values():
            self._rejoin(st, forced=True)
            while st.pending:
                self._skip_gap(st)
            if not st.ended:
                name = STREAM_NAMES[st.stream]
                log.warning("run %d: %s ended without end-of-run", self.run, name)
                self._no_eor.append(name)
                st.stop_ns = st.order.complete_ns if st.start_ns is not None else None
                self._ended(st)
        self._end_gaps()
        self._log.flush()
        update = self.advance()
        self._finished = True
        return update

    def _build(self, horizon: int, update: BuildUpdate) -> None:
        hpge = self._streams[Stream.HPGE]
        ge = hpge.buffer()
        n = int(np.searchsorted(ge["t_ns"], horizon, side="left"))
        hpge.keep_from(n)
        ge = ge[:n]
        t = np.ascontiguousarray(ge["t_ns"])
        tags = np.zeros(n, dtype=np.uint8)
        for s, window in self._windows.items():
            veto_t = self._streams[s].buffer()
            hit = tag_window(t, veto_t, window.before_ns, window.after_ns)
            set_tag(tags, hit, VETO_TAGS[s])
        set_tag(tags, (ge["flags"] & FLAG_RT) != 0, TAG_RT)
        set_tag(tags, self._uncovered.contains(t), TAG_UNCOVERED)
        on = self._on_at(t)
        set_tag(tags, on, TAG_REACTOR_ON)
        energy, bad = calibrate(
            np.ascontiguousarray(ge["adc"]),
            np.ascontiguousarray(ge["channel"]),
            self._gain,
            self._offset,
        )
        if bad:
            if not self._uncalibrated:
                log.warning("run %d: HPGe pulses from channels without calibration", self.run)
            self._uncalibrated += bad
        fill_histogram(update.hist, energy, tags, self._bin_width_keV)
        events = np.empty(n, dtype=EVENT_DTYPE)
        for name in PULSE_DTYPE.names:
            events[name] = ge[name]
        events["energy_keV"] = energy
        events["tags"] = tags
        update.events = events
        self._count_events(tags, on, update)
        self._expose(horizon, update)
        self._attribute_dead(horizon, update)
        self._trim(horizon)

    def _count_events(self, tags: np.ndarray, on: np.ndarray, update: BuildUpdate) -> None:
        ac = (tags & TAG_AC) != 0
        crv = (tags & TAG_CRV) != 0
        rt = (tags & TAG_RT) != 0
        uncovered = (tags & TAG_UNCOVERED) != 0
        for state_on, state in enumerate(REACTOR_STATES):
            here = on == bool(state_on)
            r = here & rt & ~uncovered
            p = here & ~rt & ~uncovered
            ex = update.exposure[state]
            ex.events_uncovered += int(np.count_nonzero(here & uncovered))
            ex.rt_events += int(np.count_nonzero(r))
            ex.rt_ac += int(np.count_nonzero(r & ac))
            ex.rt_crv += int(np.count_nonzero(r & crv))
            ex.rt_any += int(np.count_nonzero(r & (ac | crv)))
            ex.events_all += int(np.count_nonzero(p))
            ex.events_ac += int(np.count_nonzero(p & ac))
            ex.events_crv += int(np.count_nonzero(p & crv))
            ex.events_candidate += int(np.count_nonzero(p & ~ac & ~crv))

    # -- reactor state and exposure -----------------------------------------------------------
    def _readings(self) -> np.ndarray:
        reactor = self._streams.get(Stream.REACTOR)
        return reactor.buffer() if reactor is not None else np.zeros(0, PULSE_DTYPE)

    def _on_at(self, t: np.ndarray) -> np.ndarray:
        """Reactor ON at each time t (ns)? (daq.build.reactor; the fixed state without readings)"""
        readings = self._readings()
        if not len(readings):
            return np.full(len(t), self._fixed_on, dtype=bool)
        return on_at(readings, t)

    @property
    def power_MW(self) -> float | None:
        """Reactor thermal power (MW) of the latest reading received; None before the first."""
        readings = self._readings()
        return power_MW(readings[-1]) if len(readings) else None

    def _power_MW_at(self, t: int) -> float:
        readings = self._readings()
        if not len(readings):
            return 0.0
        return power_MW(readings[reading_index(readings, np.array([t]))[0]])

    def _expose(self, horizon: int, update: BuildUpdate) -> None:
        """Elapsed HPGe time up to the horizon, split at reactor changes."""
        hpge = self._streams[Stream.HPGE]
        if hpge.start_ns is None:
            return
        lo = hpge.start_ns if self._exposed_ns is None else self._exposed_ns
        hi = min(horizon, hpge.stop_ns if hpge.stop_ns is not None else INF_NS)
        if hi <= lo:
            return
        if self._state_on is None:
            self._state_on = bool(self._on_at(np.array([lo]))[0])
            update.reactor_changes.append(ReactorChange(lo, self._state_on, self._power_MW_at(lo)))
        readings = self._readings()
        rt = readings["t_ns"]
        inside = readings[(rt >= lo) & (rt < hi)]
        states = (inside["flags"] & FLAG_REACTOR_ON) != 0
        changed = states != np.concatenate(([self._state_on], states[:-1]))
        changes = [
            ReactorChange(int(r["t_ns"]), bool(on), power_MW(r))
            for r, on in zip(inside[changed], states[changed], strict=True)
        ]
        bounds = [lo, *(c.t_ns for c in changes), hi]
        segment_on = [self._state_on, *(c.on for c in changes)]
        for t0, t1, on in zip(bounds[:-1], bounds[1:], segment_on, strict=True):
            exposure = update.exposure[REACTOR_STATES[on]]
            exposure.elapsed_ns += t1 - t0
            exposure.uncovered_ns += self._uncovered.measure_ns(t0, t1)
        update.reactor_changes.extend(changes)
        self._state_on = segment_on[-1]
        self._exposed_ns = hi

    def _attribute_dead(self, horizon: int, update: BuildUpdate) -> None:
        """HPGe dead time, and the covered span it was reported in, of batches whose watermark
        the horizon passed."""
        if not self._dead:
            return
        wm, dead, span = np.array(self._dead, dtype=np.int64).T
        done = wm <= horizon
        on = self._on_at(wm[done] - 1)
        for state_on, state in enumerate(REACTOR_STATES):
            here = on == bool(state_on)
            update.exposure[state].dead_ns += int(dead[done][here].sum())
            update.exposure[state].dead_span_ns += int(span[done][here].sum())
        self._dead = [d for d, keep in zip(self._dead, ~done, strict=True) if keep]

    def _trim(self, horizon: int) -> None:
        """Drop veto pulses and reactor readings no HPGe pulse at or after horizon needs."""
        for s, window in self._windows.items():
            st = self._streams[s]
            st.keep_from(int(np.searchsorted(st.buffer(), horizon - window.before_ns, "left")))
        reactor = self._streams.get(Stream.REACTOR)
        if reactor is not None and len(reactor.buffer()):
            reactor.keep_from(int(reading_index(reactor.buffer(), np.array([horizon]))[0]))
        if self._exposed_ns is not None:
            self._uncovered.forget_before(min(horizon, self._exposed_ns))

    # -- state --------------------------------------------------------------------------------
    @property
    def exposure_end_ns(self) -> int | None:
        """The time (ns) up to which exposure has been counted (None before it starts)."""
        return self._exposed_ns

    @property
    def eor_received(self) -> bool:
        """True once the end-of-run of every expected stream arrived."""
        return not self.eor_missing

    @property
    def eor_missing(self) -> set[str]:
        """The expected streams whose end-of-run has not arrived."""
        return {STREAM_NAMES[s] for s, st in self._streams.items() if st.eor_seq is None}

    @property
    def buffered(self) -> dict[str, int]:
        """Records held per stream (pulses not yet built or still reachable by a window)."""
        return {
            STREAM_NAMES[s]: len(st.buffer())
            + sum(len(b.pulses) for b in st.pending.values() if b is not None)
            + sum(len(b.pulses) for b in st.later.values())
            for s, st in self._streams.items()
        }

    @property
    def summary(self) -> dict:
        """Totals so far (as of the last advance), as plain JSON-ready values."""
        total = self._total
        return {
            "run": self.run,
            "horizon_ns": self._horizon,
            "reactor_on": self._state_on,
            "pulses": {name: d.pulses for name, d in total.streams.items()},
            "complete_ns": dict(self._complete_ns),
            "lost": {name: d.lost for name, d in total.streams.items()},
            "dead_ns": {name: d.dead_ns for name, d in total.streams.items()},
            "uncovered_ns": {name: d.uncovered_ns for name, d in total.streams.items()},
            "exposure_uncovered_ns": {s: e.uncovered_ns for s, e in total.exposure.items()},
            "gaps_ns": {name: dict(by_reason) for name, by_reason in self._gap_ns.items()},
            "rejections": dict(self._rejections),
            "missing_batches": sum(d.missing_batches for d in total.streams.values()),
            "rejected_messages": sum(d.rejected_messages for d in total.streams.values()),
            "events": event_counts(total.exposure.values()),
            "rt_tags": rt_tag_counts(total.exposure.values()),
            "elapsed_ns": {s: e.elapsed_ns for s, e in total.exposure.items()},
            "live_ns": {s: e.live_ns for s, e in total.exposure.items()},
            "uncalibrated": self._uncalibrated,
            "no_eor": list(self._no_eor),
        }
