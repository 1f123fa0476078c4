"""What every process that takes part in runs shares: its links and its transition handling.

A participant (a readout, slow control) connects a PUSH of its batches to the builder and a
run-control client (daq.control.transitions), and answers three transitions: ``begin``
(``_begin``, which acknowledges itself), ``end`` (``_end_run``, acknowledged here with what it
returns) and ``exit`` (ends an open run, acknowledges, and tells the main loop to return).

A stop signal (SIGTERM, SIGINT) is handled as ``exit`` (``_leave``): an open run is ended
(last batches and end-of-run sent), and the participant stays connected until the builder
has taken every batch of the runs it ended, at most EXIT_DRAIN_S: handing a batch to ZeroMQ
is not enough, since the builder drops the unread batches of a sender that disconnects.
The builder disconnects once it closed the run (BuilderWatch). What could not be handed to
ZeroMQ is counted: ``not_sent`` in the "run N ended" log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import zmq

from daq.control.transitions import ControlClient
from daq.core.config import Config
from daq.processes.outbox import Outbox

log = logging.getLogger(__name__)

END_DRAIN_S = 30.0
"""Longest wait (s) at the end of a run for the builder to take the queued batches."""
EXIT_DRAIN_S = 5.0
"""Longest wait (s) as the process exits (the exit transition, a stop signal) for the builder
to take everything: the last batches of an open run, and all of the runs it ended."""
EXIT_DEVICE_LOST = 3
"""Exit status when the device stayed unreachable for its timeout."""


@contextmanager
def builder_links(
    config: Config, data_dir: Path, name: str
) -> Iterator[tuple[zmq.Socket, ControlClient]]:
    """The PUSH of a participant's batches to the builder and its run-control client, closed
    (with their ZeroMQ context) on exit."""
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, config.network.send_hwm)
    push.setsockopt(zmq.LINGER, 2000)
    push.connect(config.endpoint("builder_data", data_dir))
    control = ControlClient(ctx, config.endpoint("transitions", data_dir), name)
    try:
        yield push, control
    finally:
        control.close()
        push.close()
        ctx.destroy()  # and whatever else the participant opened on it (a BuilderWatch)


class BuilderWatch:
    """How a sender learns that the builder has taken everything it sent: the builder closes
    its socket, which disconnects every sender, only once it closed the run, after the
    end-of-run of every stream (or its ``builder.drain_timeout_s``). Handing a batch to
    ZeroMQ is not enough: the builder drops the unread batches of a sender that disconnects
    first."""

    def __init__(self, socket: zmq.Socket) -> None:
        self.socket = socket
        self.monitor = socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)

    def mark(self) -> None:
        """Forget earlier disconnections (a builder restarted since): only later ones count."""
        while self.monitor.poll(0, zmq.POLLIN):
            self.monitor.recv_multipart()

    def wait(self, deadline: float) -> bool:
        """Wait until the builder disconnected since the mark, at most until ``deadline``
        (time.monotonic s); True if it did."""
        left_ms = max(0, int(1000 * (deadline - time.monotonic())))
        return bool(self.monitor.poll(left_ms, zmq.POLLIN))

    def close(self) -> None:
        """Stop watching."""
        self.socket.disable_monitor()
        self.monitor.close(0)


class RunParticipant:
    """Transition handling of a process that takes part in runs (see module doc)."""

    control: ControlClient
    outbox: Outbox
    run: int | None
    _watch: BuilderWatch | None = None
    """Set up at the first end of a run, marked at each: has the builder taken it all?"""

    def handle(self, transition: dict) -> bool:
        """Act on one transition; True when the process should exit."""
        log.info("transition %s", transition)
        kind = transition["type"]
        if kind == "begin":
            self._begin(transition)
        elif kind == "end":
            info, error = self._end_run(END_DRAIN_S) if self.run is not None else ({}, "")
            self.control.ack(transition, ok=not error, error=error, **info)
        else:
            self._leave()
            self.control.ack(transition)
            return True
        return False

    def _begin(self, transition: dict) -> None:
        """Begin the run of the transition and acknowledge it."""
        raise NotImplementedError

    def _end_run(self, drain_s: float) -> tuple[dict, str]:
        """End the open run, waiting up to drain_s (s) for the builder to take what is
        queued; (what the acknowledgement carries, error text or "")."""
        raise NotImplementedError

    def _leave(self) -> None:
        """What a participant does as it exits (a stop signal or the exit transition): end
        the open run, then stay connected until the builder has taken every batch of the
        runs it ended (BuilderWatch), at most EXIT_DRAIN_S in all. A builder that is not
        stopping does not disconnect: the wait runs out, which loses nothing if it read on
        meanwhile."""
        deadline = time.monotonic() + EXIT_DRAIN_S
        if self.run is not None:
            self._end_run(EXIT_DRAIN_S)
        watch, self._watch = self._watch, None
        if watch is None:
            return
        try:
            if not watch.wait(deadline):
                log.warning(
                    "the builder did not close the run within %g s: any of this process's"
                    " batches it had not read by then are lost",
                    EXIT_DRAIN_S,
                )
        finally:
            watch.close()

    def _drain(self, drain_s: float) -> tuple[int, str]:
        """At the end of a run, after its end-of-run was queued: wait up to drain_s (s) until
        every queued batch is handed to ZeroMQ; (pulses not sent, error text or "")."""
        if self._watch is None:
            self._watch = BuilderWatch(self.outbox.socket)
        self._watch.mark()
        if self.outbox.drain(drain_s):
            return 0, ""
        not_sent = self.outbox.queued_pulses
        error = (
            f"the builder did not take {len(self.outbox.queue)} batches ({not_sent} pulses)"
            f" in {drain_s:g} s"
        )
        log.error("%s", error)
        return not_sent, error
