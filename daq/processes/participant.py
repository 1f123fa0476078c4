"""What every process that takes part in runs shares: its links and its transition handling.

A participant (a readout, slow control) connects a PUSH of its batches to the builder and a
run-control client (daq.control.transitions), and answers three transitions: ``begin``
(``_begin``, which acknowledges itself), ``end`` (``_end_run``, acknowledged here with what it
returns) and ``exit`` (ends an open run, acknowledges, and tells the main loop to return).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import zmq

from daq.control.transitions import ControlClient
from daq.core.config import Config

log = logging.getLogger(__name__)

END_DRAIN_S = 30.0
"""Longest wait (s) at the end of a run for the builder to take the queued batches."""
EXIT_DRAIN_S = 5.0
"""The same when the process is told to exit (or signalled) with a run still open."""
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
        ctx.term()


class RunParticipant:
    """Transition handling of a process that takes part in runs (see module doc)."""

    control: ControlClient
    run: int | None

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
            if self.run is not None:
                self._end_run(EXIT_DRAIN_S)
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
