"""The messages a replay sends: a raw pulses file planned into wire batches, stream by stream.

Two ways of reading, chosen by the reader process (daq.processes.replay_reader) after its
verify pass:

- intact file (``planned_messages``): the recorded batches are re-chunked into messages of
  about ``chunk_pulses`` pulses (fewer than twice that: a larger batch goes alone) spanning
  about as much DAQ time (at the file's mean rate; with pacing, at most PACED_CHUNK_WALL_S of
  wall time), renumbered (BOR seq 0, chunks 1.., EOR last), with the last batch's watermark,
  the summed dead time, drops and lost frames, and the gap its first batch declares (a batch
  after a loss always starts a chunk). The EventBuilder's result does not change: a chunk
  only joins batches that the builder would have accepted one after the other (the same
  acceptance rules, daq.build.order), and an HPGe chunk never spans a change of the reactor
  state, since the builder puts a batch's dead time in the state at its watermark. A
  ``chunk_pulses`` of 0 sends the recorded batches as they are. The streams' messages are
  merged in watermark order, so every stream advances with the others and the builder
  never holds more than about one message's span of any stream: its memory does not grow
  with the file.
- damaged file (``recorded_batches``): every batch RawReader recovers, as recorded, in
  file order.
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from daq.build.order import StreamOrder
from daq.build.reactor import on_at
from daq.core.records import Stream
from daq.formats.rawfile import RawReader
from daq.formats.rawindex import PulseIndex
from daq.formats.wire import KIND_BOR, KIND_DATA, KIND_EOR, Batch

log = logging.getLogger("daq.replay.plan")

SHUFFLE_BLOCK = 64
"""Messages permuted among themselves with --shuffle-seed (well below the builder's
out-of-order allowance, daq.build.eventbuilder.MAX_PENDING_BATCHES)."""
PREFETCH = 4
"""Messages the reader prepares ahead of the one being sent."""
PACED_CHUNK_WALL_S = 0.1
"""With --speed, a message spans at most this much wall time of DAQ data (s)."""


class _Plan:
    """The messages of one stream of an intact file (index rows -> wire messages)."""

    def __init__(
        self, index: PulseIndex, stream: Stream, chunk_pulses: int, chunk_span_ns: int
    ) -> None:
        self.index = index
        self.stream = stream
        self.rows, b = index.of_stream(int(stream))
        self.batches = b
        self.regular = chunk_pulses > 0 and self._regular(b, index.run)
        if self.regular:
            groups = self._groups(b, chunk_pulses, chunk_span_ns)
            self.chunked = groups >= 0
            # the positions where each run of equal group ids starts, and their sums
            self.bounds = np.r_[0, np.flatnonzero(np.diff(groups) != 0) + 1, len(b)]
            counters = ("dead_ns", "dropped", "lost_frames")
            self.sums = {k: np.add.reduceat(b[k], self.bounds[:-1]) for k in counters}

    @staticmethod
    def _regular(b: np.ndarray, run: int) -> bool:
        """Seqs 0..n-1 in file order, BOR first, DATA between, EOR only last, one run,
        watermarks non-decreasing: then renumbering cannot change what the builder does."""
        n = len(b)
        if n < 2 or np.any(b["seq"] != np.arange(n)) or np.any(b["run"] != run):
            return False
        kinds = b["kind"]
        if kinds[0] != KIND_BOR or np.any(kinds[1:-1] != KIND_DATA):
            return False
        if kinds[-1] not in (KIND_DATA, KIND_EOR):
            return False
        return bool(np.all(np.diff(b["watermark_ns"]) >= 0))

    def _groups(self, b: np.ndarray, chunk_pulses: int, chunk_span_ns: int) -> np.ndarray:
        """Group id of every DATA batch (BOR and a final EOR are messages of their own)."""
        data = slice(1, len(b) - 1 if b["kind"][-1] == KIND_EOR else len(b))
        d = b[data]
        before = np.cumsum(d["n"]) - d["n"]
        key = np.zeros(len(d), dtype=np.int64)
        if len(d):
            span = (d["watermark_ns"] - d["watermark_ns"][0]) // max(chunk_span_ns, 1)
            breaks = np.r_[False, (np.diff(before // chunk_pulses) != 0) | (np.diff(span) != 0)]
            breaks |= d["gap"] != 0  # a batch after a loss starts a chunk: it declares the gap
            alone = d["n"] >= chunk_pulses  # so no chunk reaches twice chunk_pulses
            breaks |= alone | np.r_[False, alone[:-1]]
            if self.stream == Stream.HPGE:
                state = self._reactor_state(d["watermark_ns"] - 1)
                breaks |= np.r_[False, np.diff(state) != 0]
            key = np.cumsum(breaks)
        groups = np.full(len(b), -1, dtype=np.int64)
        groups[data] = key
        return groups

    def _reactor_state(self, t: np.ndarray) -> np.ndarray:
        """Reactor state (0/1) at each time as the builder looks it up (daq.build.reactor).
        If the reactor stream is not regular, a stand-in that changes after every batch with
        dead time, so that such a batch ends its chunk."""
        rows, batches = self.index.of_stream(int(Stream.REACTOR))
        readings = self.index.pulses(rows)
        if not self._regular(batches, self.index.run) or np.any(np.diff(readings["t_ns"]) < 0):
            dead = self.batches["dead_ns"][1 : 1 + len(t)] > 0
            return np.cumsum(dead) + dead  # changes after every batch with dead time
        if not len(readings):
            return np.zeros(len(t), dtype=np.int64)
        return on_at(readings, t).astype(np.int64)

    def messages(self) -> Iterator[Batch]:
        """The wire messages in sending order."""
        b = self.batches
        if not self.regular:
            for i, row in enumerate(self.rows):
                yield self._batch(b[i], self.index.pulses([row]), int(b["seq"][i]))
            return
        order = StreamOrder()
        counts, wm = b["n"], b["watermark_ns"]
        seq = 0
        for p, (first, end) in enumerate(zip(self.bounds[:-1], self.bounds[1:], strict=True)):
            pulses = self.index.pulses(self.rows[first:end])
            t = pulses["t_ns"]
            if self.chunked[first] and end - first > 1:
                if order.accepts_chunk(t, counts[first:end], wm[first:end]):
                    order.advance(t, int(wm[end - 1]))
                    yield self._chunk(p, int(wm[end - 1]), pulses, seq)
                    seq += 1
                    continue
            for i in range(first, end):  # a message of its own, or a chunk not accepted
                one = self.index.pulses(self.rows[i : i + 1])
                if order.accepts(one["t_ns"], int(wm[i])):
                    order.advance(one["t_ns"], int(wm[i]))
                yield self._batch(b[i], one, seq)
                seq += 1

    def _batch(self, row: np.void, pulses: np.ndarray, seq: int) -> Batch:
        return Batch(
            int(row["kind"]),
            int(row["stream"]),
            int(row["run"]),
            seq,
            int(row["watermark_ns"]),
            pulses,
            int(row["dead_ns"]),
            int(row["dropped"]),
            int(row["lost_frames"]),
            int(row["gap"]),
            int(row["covered_from_ns"]),
        )

    def _chunk(self, p: int, watermark_ns: int, pulses: np.ndarray, seq: int) -> Batch:
        """Chunk ``p`` as one message: the last batch's watermark, the summed counters, the
        first batch's gap (no other batch of a chunk has one)."""
        first = self.batches[self.bounds[p]]
        return Batch(
            KIND_DATA,
            int(self.stream),
            self.index.run,
            seq,
            watermark_ns,
            pulses,
            int(self.sums["dead_ns"][p]),
            int(self.sums["dropped"][p]),
            int(self.sums["lost_frames"][p]),
            int(first["gap"]),
            int(first["covered_from_ns"]),
        )


def recorded_batches(path: Path, streams: tuple[Stream, ...]) -> Iterator[Batch]:
    """Every batch of the streams that RawReader recovers from a (damaged) file, as recorded."""
    for batch in RawReader(path).iter_batches():
        if batch.stream in streams:
            yield batch


def chunk_span_ns(batches: np.ndarray, chunk_pulses: int, speed: float) -> int:
    """DAQ time a message may span (ns): what holds ``chunk_pulses`` at the mean rate of the
    indexed ``batches`` (1 ms to 1000 s); with pacing at ``speed`` x real time, at most
    PACED_CHUNK_WALL_S of wall time."""
    wm = batches["watermark_ns"]
    span_ns = max(int(wm.max()) - int(wm.min()), 1) if len(wm) else 1
    rate_hz = max(int(batches["n"].sum()), 1) / (span_ns / 1e9)
    span = int(min(max(chunk_pulses / rate_hz, 1e-3), 1e3) * 1e9)
    return min(span, int(speed * PACED_CHUNK_WALL_S * 1e9)) if speed > 0 else span


def planned_messages(
    index: PulseIndex, streams: tuple[Stream, ...], chunk_pulses: int, span_ns: int
) -> Iterator[Batch]:
    """The streams' messages of an intact file (see _Plan), merged in watermark order."""
    plans = [_Plan(index, s, chunk_pulses, span_ns) for s in streams]
    return heapq.merge(*(p.messages() for p in plans), key=lambda batch: batch.watermark_ns)


def shuffled(messages: Iterator[Batch], seed: int) -> Iterator[Batch]:
    """The messages permuted within consecutive blocks of SHUFFLE_BLOCK."""
    rng = np.random.default_rng(seed)
    block: list[Batch] = []
    for message in messages:
        block.append(message)
        if len(block) == SHUFFLE_BLOCK:
            yield from (block[i] for i in rng.permutation(len(block)))
            block = []
    yield from (block[i] for i in rng.permutation(len(block)))


def prefetched(messages: Iterator[Batch], depth: int = PREFETCH) -> Iterator[Batch]:
    """The messages, prepared up to ``depth`` ahead by a background thread: reading and
    re-chunking (numba, without the GIL) go on while a send waits for the builder."""
    ready: queue.Queue = queue.Queue(depth)
    done = object()

    def produce() -> None:
        try:
            for message in messages:
                ready.put(message)
            ready.put(done)
        except Exception as err:  # handed to the consumer, raised there
            ready.put(err)

    threading.Thread(target=produce, name="prefetch", daemon=True).start()
    while (item := ready.get()) is not done:
        if isinstance(item, Exception):
            raise item
        yield item
