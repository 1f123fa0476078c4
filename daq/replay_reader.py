"""The replay reader process: raw file -> batches of every stream -> ZeroMQ PUSH to the builder.

``python -m daq.replay_reader --file F --streams S1,S2,... --endpoint E --board B [options]``

One OS process (log name ``replay-reader``), started by ``daq.replay``, reads the file for
every stream and sends the streams' recorded batches, each stream in recorded order, over
the same data path as the live readouts, so the builder cannot tell a replay from a run.
One process, not one per stream: on a small machine the readers' start-up (interpreter,
numpy, numba) and their waiting for each other cost more than the reading itself, and the
builder needs the other core.

The reader first indexes and verifies the whole file (``daq.rawindex.scan_pulses``, one
numba pass) and posts what it found on the progress board. Two ways of reading follow:

- intact file: the recorded batches are re-chunked into messages of at most
  ``--chunk-pulses`` pulses spanning about as much DAQ time (at the file's mean rate; with
  ``--speed``, at most PACED_CHUNK_WALL_S of wall time), renumbered
  (BOR seq 0, chunks 1.., EOR last), with the last batch's watermark and the summed dead
  time, drops and lost frames. The EventBuilder's result does not change: a chunk only
  joins batches that the builder would have accepted one after the other (the reader
  follows the builder's acceptance rules), and an HPGe chunk never spans a change of the
  reactor state, since the builder puts a batch's dead time in the state at its watermark.
  ``--chunk-pulses 0`` sends the recorded batches as they are. The streams' messages are
  sent merged in watermark order, so every stream advances with the others and the
  builder never holds more than about one message's span of any stream: its memory does
  not grow with the file.
- damaged file: every batch RawReader recovers, as recorded, in file order.

Progress board (daq.board), shared with the replay: the reader prepares its first message,
says it is ready and waits for the start signal, so the replay's clock measures streaming,
not process start-up. Once it has sent everything it stays connected until the replay
releases it (after the builder acknowledged the end of the run): ZeroMQ drops what is
still in flight from a peer that goes away. ``--speed`` paces the sends to a multiple of
real time (0 = as fast as possible); ``--shuffle-seed`` permutes the messages within
blocks of SHUFFLE_BLOCK (the builder must reorder them).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numba
import numpy as np
import zmq

from .board import (
    DONE,
    READY,
    RELEASE,
    SENT_MESSAGES,
    SENT_PULSES,
    START,
    WATERMARK,
    open_board,
    post_file_facts,
)
from .kernels import is_sorted
from .rawfile import RawReader
from .rawindex import PulseIndex, scan_pulses
from .records import FLAG_REACTOR_ON, STREAM_NAMES, Stream, stream_by_name
from .wire import KIND_BOR, KIND_DATA, KIND_EOR, Batch, send_batch

log = logging.getLogger("daq.replay_reader")

SEND_HWM = 4
"""Messages queued in ZeroMQ before the builder's pace holds the reader."""
SHUFFLE_BLOCK = 64
"""Messages permuted among themselves with --shuffle-seed (well below the builder's
out-of-order allowance, daq.eventbuilder.MAX_PENDING_BATCHES)."""
WAIT_S = 0.001
PREFETCH = 4
"""Messages the reader prepares ahead of the one being sent."""
PACED_CHUNK_WALL_S = 0.1
"""With --speed, a message spans at most this much wall time of DAQ data (s)."""


class _Builder:
    """The acceptance state the EventBuilder keeps for one stream (daq.eventbuilder._apply)."""

    def __init__(self) -> None:
        self.complete_ns = -(2**62)
        self.last_t_ns = -(2**62)

    def accepts(self, t: np.ndarray, watermark_ns: int) -> bool:
        """Would the builder apply this batch (given as its pulse times and watermark)?"""
        if watermark_ns < self.complete_ns:
            return False
        if len(t) and (t[0] < max(self.complete_ns, self.last_t_ns) or not is_sorted(t)):
            return False
        return True

    def apply(self, t: np.ndarray, watermark_ns: int) -> None:
        """Follow a batch the builder accepts."""
        self.complete_ns = watermark_ns
        if len(t):
            self.last_t_ns = int(t[-1])

    def accepts_chunk(self, t: np.ndarray, counts: np.ndarray, wm: np.ndarray) -> bool:
        """Would the builder accept every batch of a chunk, one after the other?

        ``t``: the chunk's pulse times; ``counts``: pulses of each batch; ``wm``: each
        batch's watermark (non-decreasing, checked on the index).
        """
        return _chunk_accepted(t, counts, wm, self.complete_ns, self.last_t_ns)


@numba.njit(cache=True, nogil=True)
def _chunk_accepted(t, counts, wm, complete_ns, last_t_ns):
    """_Builder.accepts_chunk in one pass: no pulse before the one sent last, and each
    batch's first pulse not below the previous batch's watermark."""
    if wm[0] < complete_ns:
        return False
    k = 0
    before = complete_ns
    previous = last_t_ns
    for i in range(counts.shape[0]):
        for r in range(counts[i]):
            if t[k] < previous or (r == 0 and t[k] < before):
                return False
            previous = t[k]
            k += 1
        before = wm[i]
    return True


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
            if self.stream == Stream.HPGE:
                state = self._reactor_state(d["watermark_ns"] - 1)
                breaks |= np.r_[False, np.diff(state) != 0]
            key = np.cumsum(breaks)
        groups = np.full(len(b), -1, dtype=np.int64)
        groups[data] = key
        return groups

    def _reactor_state(self, t: np.ndarray) -> np.ndarray:
        """Reactor state (0/1) at each time as the builder looks it up (last reading at or
        before t, else the first). If the reactor stream is not regular, a stand-in that
        changes after every batch with dead time, so that such a batch ends its chunk."""
        rows, batches = self.index.of_stream(int(Stream.REACTOR))
        readings = self.index.pulses(rows)
        if not self._regular(batches, self.index.run) or np.any(np.diff(readings["t_ns"]) < 0):
            dead = self.batches["dead_ns"][1 : 1 + len(t)] > 0
            return np.cumsum(dead) + dead  # changes after every batch with dead time
        if not len(readings):
            return np.zeros(len(t), dtype=np.int64)
        i = np.maximum(np.searchsorted(readings["t_ns"], t, side="right") - 1, 0)
        return ((readings["flags"][i] & FLAG_REACTOR_ON) != 0).astype(np.int64)

    def messages(self) -> Iterator[Batch]:
        """The wire messages in sending order."""
        b = self.batches
        if not self.regular:
            for i, row in enumerate(self.rows):
                yield self._batch(b[i], self.index.pulses([row]), int(b["seq"][i]))
            return
        state = _Builder()
        counts, wm = b["n"], b["watermark_ns"]
        seq = 0
        for p, (first, end) in enumerate(zip(self.bounds[:-1], self.bounds[1:], strict=True)):
            pulses = self.index.pulses(self.rows[first:end])
            t = pulses["t_ns"]
            if self.chunked[first] and end - first > 1:
                if state.accepts_chunk(t, counts[first:end], wm[first:end]):
                    state.apply(t, int(wm[end - 1]))
                    yield self._chunk(p, int(wm[end - 1]), pulses, seq)
                    seq += 1
                    continue
            for i in range(first, end):  # a message of its own, or a chunk not accepted
                one = self.index.pulses(self.rows[i : i + 1])
                if state.accepts(one["t_ns"], int(wm[i])):
                    state.apply(one["t_ns"], int(wm[i]))
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
        )

    def _chunk(self, p: int, watermark_ns: int, pulses: np.ndarray, seq: int) -> Batch:
        """Chunk ``p`` as one message: the last batch's watermark, the summed counters."""
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


class Sender:
    """Sends messages with pacing, counting them per stream on the progress board."""

    def __init__(
        self,
        board: np.ndarray,
        streams: tuple[Stream, ...],
        socket: zmq.Socket,
        speed: float,
        t0_ns: int,
    ) -> None:
        self.board = board
        self.rows = {int(s): board[i] for i, s in enumerate(streams)}
        self.speed = speed
        self.t0_ns = t0_ns
        self.socket = socket
        self.start = time.monotonic()
        self.cpu_start = time.process_time()
        self.sending_s = 0.0

    def wait_for_start(self) -> None:
        """Say the reader is ready, then wait for the start signal."""
        self.board[:-1, READY] = 1
        while self.board[-1, START] == 0:
            time.sleep(WAIT_S)
        self.start = time.monotonic()
        self.cpu_start = time.process_time()

    def send(self, batch: Batch) -> None:
        """Send one message once pacing allows it."""
        if self.speed > 0:
            due = self.start + (batch.watermark_ns - self.t0_ns) / (self.speed * 1e9)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        started = time.monotonic()
        send_batch(self.socket, batch)
        self.sending_s += time.monotonic() - started
        row = self.rows[batch.stream]
        row[WATERMARK] = max(row[WATERMARK], batch.watermark_ns)
        row[SENT_PULSES] += len(batch.pulses)
        row[SENT_MESSAGES] += 1

    def finish(self) -> None:
        """Say everything was sent, then stay connected until released (or orphaned)."""
        self.board[:-1, DONE] = 1
        parent = os.getppid()
        while self.board[-1, RELEASE] == 0 and os.getppid() == parent:
            time.sleep(WAIT_S * 10)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="nudaq replay reader: the streams of a raw file")
    p.add_argument("--file", type=Path, required=True, help="raw pulses file")
    p.add_argument("--streams", required=True, help="comma-separated: board row order")
    p.add_argument("--endpoint", required=True, help="the builder's data endpoint (PUSH)")
    p.add_argument("--board", type=Path, required=True, help="progress board (.npy)")
    p.add_argument("--chunk-pulses", type=int, default=1 << 17, help="0: as recorded")
    p.add_argument("--speed", type=float, default=0.0, help="x real time (0: as fast as can)")
    p.add_argument("--shuffle-seed", type=int, help="permute messages within blocks")
    p.add_argument("--data-dir", type=Path, required=True, help="logs go to DIR/logs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m daq.replay_reader``."""
    from .process import setup_logging

    args = parse_args(argv)
    streams = tuple(stream_by_name(name) for name in args.streams.split(","))
    setup_logging("replay-reader", args.data_dir)
    board = open_board(args.board)
    index = scan_pulses(args.file)
    b = index.batches
    post_file_facts(board, int(b["n"].sum()), index.intact)
    if index.intact:
        span_ns = chunk_span_ns(b, args.chunk_pulses, args.speed)
        messages = planned_messages(index, streams, args.chunk_pulses, span_ns)
    else:
        log.warning("%s: %s; replaying what can be recovered", args.file, index.reason)
        messages = recorded_batches(args.file, streams)
    if args.shuffle_seed is not None:
        messages = shuffled(messages, args.shuffle_seed)
    messages = prefetched(messages)
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, SEND_HWM)
    push.connect(args.endpoint)
    t0_ns = int(b["watermark_ns"].min()) if len(b) else 0
    sender = Sender(board, streams, push, args.speed, t0_ns)
    try:
        first = next(messages, None)
        sender.wait_for_start()
        for batch in itertools.chain([first] if first is not None else [], messages):
            sender.send(batch)
        for stream, row in zip(streams, board, strict=False):
            log.info(
                "%s: %d pulses in %d messages",
                STREAM_NAMES[stream],
                row[SENT_PULSES],
                row[SENT_MESSAGES],
            )
        log.info(
            "sent in %.3f s, %.3f s of CPU (%.3f s in sends)",
            time.monotonic() - sender.start,
            time.process_time() - sender.cpu_start,
            sender.sending_s,
        )
        sender.finish()
    finally:
        push.close(linger=0)
        ctx.term()
    return 0


if __name__ == "__main__":
    from .process import exit_now

    exit_now(main())
