"""The replay reader process: raw file -> batches of every stream -> ZeroMQ PUSH to the builder.

``python -m daq.processes replay-reader --file F --streams S1,S2,... --endpoint E --board B``

One OS process (log name ``replay-reader``), started by daq.replay.runner, reads the file
for every stream and sends the streams' recorded batches, each stream in recorded order,
over the same data path as the live readouts, so the builder cannot tell a replay from a
run. One process, not one per stream: on a small machine the readers' start-up
(interpreter, numpy, numba) and their waiting for each other cost more than the reading
itself, and the builder needs the other core.

The reader first indexes and verifies the whole file (daq.formats.rawindex.scan_pulses, one
numba pass) and posts what it found on the progress board (daq.replay.board); the messages
it sends are planned by daq.replay.plan (an intact file re-chunked, a damaged one as
recorded). It prepares its first message, says it is ready and waits for the start signal,
so the replay's clock measures streaming, not process start-up. Once it has sent everything
it stays connected until the replay releases it (after the builder acknowledged the end of
the run): ZeroMQ drops what is still in flight from a peer that goes away. ``--speed`` paces
the sends to a multiple of real time (0 = as fast as possible); ``--shuffle-seed`` permutes
the messages within blocks of daq.replay.plan.SHUFFLE_BLOCK (the builder must reorder them).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import time
from pathlib import Path

import numpy as np
import zmq

from daq.core.records import STREAM_NAMES, Stream, stream_by_name
from daq.formats.rawindex import scan_pulses
from daq.formats.wire import Batch, send_batch
from daq.processes.common import setup_logging
from daq.replay.board import (
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
from daq.replay.plan import (
    chunk_span_ns,
    planned_messages,
    prefetched,
    recorded_batches,
    shuffled,
)

log = logging.getLogger("daq.replay.plan")


SEND_HWM = 4
"""Messages queued in ZeroMQ before the builder's pace holds the reader."""


WAIT_S = 0.001


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
    """Entry point of the replay-reader service."""
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
