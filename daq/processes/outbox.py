"""A sending process's queue of batches to the builder: never blocking, never losing silently."""

from __future__ import annotations

import logging
import time
from collections import deque

import zmq

from daq.core.records import Loss, empty_pulses
from daq.formats.wire import Batch, send_batch

log = logging.getLogger(__name__)


class Outbox:
    """Batches on their way to the builder: sent without blocking, queued in order meanwhile.

    The queue holds at most ``buffer_pulses`` pulses. A batch that would overflow it is sent
    without its pulses: they are counted in its ``dropped`` field, and it declares the whole
    span since the previous batch's watermark as a gap (Loss.OVERFLOW: this stream's dead or
    blind time). Batches without pulses (BOR, EOR, heartbeats) always fit.
    """

    def __init__(self, socket: zmq.Socket, buffer_pulses: int) -> None:
        self.socket = socket
        self.buffer_pulses = buffer_pulses
        self.queue: deque[Batch] = deque()
        self.queued_pulses = 0
        self.sent_pulses = 0
        self.dropped = 0
        self._held_since: float | None = None
        self._dropping_from: int | None = None

    def put(self, batch: Batch) -> None:
        """Queue a batch (dropping its pulses if they do not fit) and send what can go."""
        self.flush()
        n = len(batch.pulses)
        if n and self.queued_pulses + n > self.buffer_pulses:
            batch.pulses = empty_pulses()
            batch.dropped += n
            batch.dead_ns = 0  # of time that is not covered at all
            batch.gap = Loss.OVERFLOW
            batch.covered_from_ns = batch.watermark_ns
            if self._dropping_from is None:
                self._dropping_from = self.dropped
                log.warning("buffer of %d pulses full: dropping batches", self.buffer_pulses)
            self.dropped += n
        elif n and self._dropping_from is not None:
            log.warning("dropping ended: %d pulses dropped", self.dropped - self._dropping_from)
            self._dropping_from = None
        self.queue.append(batch)
        self.queued_pulses += len(batch.pulses)
        self.flush()

    def flush(self) -> None:
        """Send queued batches until the builder pushes back."""
        while self.queue:
            try:
                send_batch(self.socket, self.queue[0], zmq.NOBLOCK)
            except zmq.Again:
                if self._held_since is None:
                    self._held_since = time.monotonic()
                    log.info("the builder pushes back: queueing batches")
                return
            self._sent(self.queue.popleft())
        if self._held_since is not None:
            log.info("queue drained after %.1f s", time.monotonic() - self._held_since)
            self._held_since = None

    def drain(self, timeout_s: float) -> bool:
        """Wait up to timeout_s (s) until every queued batch is sent; True if all went."""
        deadline = time.monotonic() + timeout_s
        while self.queue:
            left_ms = int(1000 * (deadline - time.monotonic()))
            if left_ms <= 0:
                return False
            if self.socket.poll(min(left_ms, 100), zmq.POLLOUT):
                self.flush()
        return True

    def _sent(self, batch: Batch) -> None:
        self.queued_pulses -= len(batch.pulses)
        self.sent_pulses += len(batch.pulses)
