"""Watching a running system from outside its runs: the builder's monitor snapshots.

The builder publishes one JSON snapshot about once per wall second (PUB on
``network.monitor``; its layout is the builder's ``snapshot``). Run control, the monitor and
the web server each keep a ``SnapshotSubscriber``: the newest snapshot and when it arrived.
Dropping snapshots is fine (PUB/SUB); a message that is not JSON is logged and ignored.
"""

from __future__ import annotations

import json
import logging
import time

import zmq

log = logging.getLogger(__name__)


class SnapshotSubscriber:
    """SUB to the builder's monitor snapshots; ``latest`` is the newest ({} before any)."""

    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:
        self.socket = ctx.socket(zmq.SUB)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)
        self.latest: dict = {}
        self.received_at: float | None = None
        """When the newest snapshot arrived (monotonic s), None before the first."""

    def drain(self) -> None:
        """Take every snapshot that arrived, keeping the newest."""
        while self.socket.poll(0, zmq.POLLIN):
            try:
                self.latest = json.loads(self.socket.recv())
                self.received_at = time.monotonic()
            except ValueError:
                log.warning("ignored a monitor snapshot that is not JSON")

    @property
    def age_s(self) -> float | None:
        """Seconds since the newest snapshot arrived (None before the first)."""
        return None if self.received_at is None else time.monotonic() - self.received_at

    def close(self) -> None:
        """Close the socket."""
        self.socket.close(0)
