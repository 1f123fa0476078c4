"""Run-control transitions over ZeroMQ: how every process hears begin/end of run.

Run control binds a ROUTER socket (``network.transitions``); every process connects a DEALER
whose identity is its process name, says hello, and then receives transitions, each answered
by exactly one acknowledgement. Messages are small JSON objects (control, not data):

    process -> run control   {"type": "hello", "name": str, "pid": int}
    run control -> process   {"type": "begin", "id": int, "run": int, ...}
                             {"type": "rejoin", "id": int, "run": int, "stream": str,
                              "incarnation": int}   (to the builder: a restarted sender)
                             {"type": "end", "id": int, "run": int}
                             {"type": "exit", "id": int}
    process -> run control   {"type": "ack", "id": int, "name": str, "ok": bool,
                              "error": str, "info": {...}}
                             {"type": "request", "cmd": "stop", "run": int, "reason": str}
                              (the builder closed the run: its disk is full)

The ``info`` of the builder's end-of-run acknowledgement is the run summary.
"""

from __future__ import annotations

import json
import os

import zmq

TRANSITIONS = ("begin", "rejoin", "end", "exit")


class ControlClient:
    """A process's end of the transition channel."""

    def __init__(self, ctx: zmq.Context, endpoint: str, name: str) -> None:
        self.name = name
        self.socket = ctx.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.IDENTITY, name.encode())
        self.socket.setsockopt(zmq.LINGER, 1000)
        self.socket.connect(endpoint)
        self.send({"type": "hello", "name": name, "pid": os.getpid()})

    def send(self, message: dict) -> None:
        """Send one JSON message to run control."""
        self.socket.send(json.dumps(message).encode())

    def poll(self, timeout_ms: int = 0) -> dict | None:
        """The next transition, or None if none arrived within timeout_ms."""
        if not self.socket.poll(timeout_ms, zmq.POLLIN):
            return None
        message = json.loads(self.socket.recv())
        if message.get("type") not in TRANSITIONS:
            raise ValueError(f"unknown transition {message.get('type')!r}")
        return message

    def acknowledge_pending(self) -> None:
        """Acknowledge every transition that arrived (for an observer that says hello, so run
        control lists it, but takes no part in runs)."""
        while (transition := self.poll(0)) is not None:
            self.ack(transition)

    def ack(self, transition: dict, ok: bool = True, error: str = "", **info) -> None:
        """Acknowledge a transition (with whatever the process wants run control to know)."""
        self.send(
            {
                "type": "ack",
                "id": transition.get("id"),
                "name": self.name,
                "ok": ok,
                "error": error,
                "info": info,
            }
        )

    def close(self) -> None:
        """Close the socket."""
        self.socket.close()
