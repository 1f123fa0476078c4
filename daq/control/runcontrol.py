"""Run control: the state machine served over ZeroMQ, delivering transitions to every process.

Requests arrive on a REP socket (``network.run_control``) as JSON ``{"cmd": ...}``:
``status``, ``start`` (optional ``comment``), ``stop``, ``shutdown``; every reply is
``{"ok": bool, "error": str, ...}``. Transitions go to the processes over the ROUTER of
daq.control.transitions, in a fixed order: at begin the builder first, then slow control,
the vetoes and last the HPGe ADC (so every veto is live before the first HPGe pulse); at
end the reverse.
The builder's end-of-run acknowledgement carries the run summary.

SQL through database outages. A run's end (``stop_run``, ``fail``: the run's state and stop
time, the automatic logbook entry) is a queued write of run control (daq.store.durable): a
stop completes while the database is away, and its SQL is stored when it is back. A start
is refused, in one line and without leaving idle, while the database is unavailable or run
control's queued writes are still being stored. The run number is the database's: one more
than the highest number it holds, allocated in the transaction that records the run, and
that database is shared (``nudaq sim generate``, a second system, a test stand may all add
runs to it). A number taken without it (from the raw-file directory or a local counter)
could already be, or soon be, another run's, and two runs with one number cannot both be
stored; so no run begins that the database has not numbered.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import zmq

from daq.control.observer import SnapshotSubscriber
from daq.control.runstate import RunState, RunStateMachine
from daq.core.config import Config
from daq.core.errors import RunControlError

if TYPE_CHECKING:
    from daq.store.durable import DurableWriter

log = logging.getLogger(__name__)

BEGIN_ORDER = ("builder", "slowcontrol", "readout-crv", "readout-acv", "readout-hpge")
"""Processes that take part in a run, in the order they hear begin-of-run."""
ACK_TIMEOUT_S = 20.0
END_TIMEOUT_S = 60.0


@dataclass
class ProcessInfo:
    """A process that said hello on the transition channel."""

    name: str
    pid: int


class RunControl:
    """The state machine plus the sockets to the processes and to its clients."""

    def __init__(self, config: Config, data_dir: Path, engine, ctx: zmq.Context | None = None):
        self.config = config
        self.data_dir = Path(data_dir)
        self.engine = engine
        self.ctx = ctx or zmq.Context.instance()
        self.machine = RunStateMachine()
        self.processes: dict[str, ProcessInfo] = {}
        self.participants = BEGIN_ORDER
        self.run_started: float | None = None
        self.last_summary: dict | None = None
        self.error = ""
        self._next_id = 1
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.bind(config.endpoint("transitions", data_dir))
        self.rep = self.ctx.socket(zmq.REP)
        self.rep.setsockopt(zmq.LINGER, 0)
        self.rep.bind(config.endpoint("run_control", data_dir))
        self.snapshots = SnapshotSubscriber(self.ctx, config.endpoint("monitor", data_dir))

    # -- the transition channel -------------------------------------------------------------
    def _handle_process_message(self, identity: bytes, message: dict) -> dict | None:
        name = identity.decode()
        if message.get("type") == "hello":
            self.processes[name] = ProcessInfo(name, int(message.get("pid", 0)))
            log.info("process %s (pid %s) joined", name, message.get("pid"))
            return None
        return message

    def pump(self, timeout_ms: int = 0) -> list[dict]:
        """Read whatever processes sent; returns acknowledgements (hellos are absorbed)."""
        acks = []
        while self.router.poll(timeout_ms, zmq.POLLIN):
            identity, payload = self.router.recv_multipart()
            message = self._handle_process_message(identity, json.loads(payload))
            if message is not None:
                acks.append(message)
            timeout_ms = 0
        self.snapshots.drain()
        return acks

    def wait_for_processes(self, names, timeout_s: float, alive=lambda: None) -> None:
        """Block until every named process said hello; ``alive`` raises if one died."""
        deadline = time.monotonic() + timeout_s
        while missing := [n for n in names if n not in self.processes]:
            alive()
            if time.monotonic() > deadline:
                raise RunControlError(
                    f"processes did not report within {timeout_s:.0f} s: {', '.join(missing)}"
                )
            self.pump(100)

    def transition(self, name: str, kind: str, timeout_s: float, alive=lambda: None, **fields):
        """Send one transition to one process and wait for its acknowledgement."""
        if name not in self.processes:
            raise RunControlError(f"process {name} is not connected")
        message_id = self._next_id
        self._next_id += 1
        message = {"type": kind, "id": message_id, **fields}
        try:
            self.router.send_multipart([name.encode(), json.dumps(message).encode()])
        except zmq.ZMQError as err:
            raise RunControlError(f"cannot reach process {name}: {err}") from None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            alive()
            for ack in self.pump(100):
                if ack.get("id") == message_id:
                    if not ack.get("ok", False):
                        raise RunControlError(f"{name} refused {kind}: {ack.get('error')}")
                    return ack.get("info", {})
                log.warning("unexpected message from a process: %s", ack)
        raise RunControlError(f"{name} did not acknowledge {kind} within {timeout_s:.0f} s")

    # -- runs ---------------------------------------------------------------------------------
    @functools.cached_property
    def writes(self) -> DurableWriter:
        """Run control's queued writes, opened at the first run (with the journal an earlier
        run control left): a replay, which uses run control for its transitions only, opens
        none. The store is imported here: clients of ``request`` need none of it."""
        from daq.store.durable import DurableWriter
        from daq.store.runs import RUN_END, apply_run_end

        return DurableWriter(
            self.engine,
            self.data_dir,
            "runcontrol",
            {RUN_END: apply_run_end},
            self.config.database,
        )

    def start_run(self, comment: str = "", alive=lambda: None) -> int:
        """Begin a new run on every participant; returns its number.

        The run is recorded in SQL first, which numbers it; without the database the start
        is refused and run control stays idle (module doc).
        """
        if self.machine.state is not RunState.IDLE:
            raise RunControlError(f"cannot start while {self.machine.state.value}")
        number = self._create_run(comment)
        self.machine.apply("start")
        self.machine.run = number
        self.run_started = time.time()
        self.last_summary = None
        try:
            for name in self.participants:
                self.transition(name, "begin", ACK_TIMEOUT_S, alive, run=number)
        except RunControlError as err:
            self.fail(str(err))
            raise
        log.info("run %d started", number)
        return number

    def _create_run(self, comment: str) -> int:
        """Record a new run in SQL, numbered by it, after run control's queued writes (waiting
        for those, and for another SQLite writer, at most ``database.busy_timeout_s`` each);
        RunControlError in one line if the database cannot."""
        from sqlalchemy.exc import SQLAlchemyError

        from daq.store.durable import first_line
        from daq.store.runs import add_logbook, create_run, next_run_number
        from daq.store.session import session_scope

        timeout_s = self.config.database.busy_timeout_s
        if not (self.writes.wait(timeout_s) and self.writes.caught_up):
            status = self.writes.status()
            raise RunControlError(
                "cannot start a run: the database is unavailable or still storing earlier"
                f" writes ({status['queued']} queued, {status['journaled']} journaled);"
                " runs are numbered by it: start again when it answers"
            )
        try:
            with session_scope(self.engine, busy_timeout_s=timeout_s) as session:
                number = next_run_number(session)
                create_run(session, number, self.config, comment=comment, simulated=True)
                add_logbook(
                    session,
                    "run control",
                    f"run {number} started. {comment}".strip(),
                    run_number=number,
                    automatic=True,
                )
        except SQLAlchemyError as err:
            raise RunControlError(
                f"cannot start a run: the database is unavailable ({first_line(err)});"
                " runs are numbered by it: start again when it answers"
            ) from None
        return number

    def stop_run(self, alive=lambda: None) -> dict:
        """End the current run on every participant; returns the builder's run summary.
        The run's end is a queued write: stored now, or when the database is back."""
        from daq.store.runs import RUN_END, run_end

        self.machine.apply("stop")
        number = self.machine.run
        summary: dict = {}
        try:
            for name in reversed(self.participants):
                info = self.transition(name, "end", END_TIMEOUT_S, alive, run=number)
                if name == "builder":
                    summary = info
        except RunControlError as err:
            self.fail(str(err))
            raise
        self.writes.submit(RUN_END, run_end(number, f"run {number} stopped"))
        self.machine.apply("stopped")
        self.last_summary = summary
        log.info("run %d stopped: %s", number, summary)
        return summary

    def fail(self, reason: str) -> None:
        """Enter the error state, mark the open run as failed (a queued write), and remember
        why."""
        from daq.store.runs import RUN_END, run_end

        self.error = reason
        number = self.machine.run if self.machine.state is not RunState.IDLE else None
        self.machine.apply("fail")
        log.error("run control error: %s", reason)
        if number is not None:
            text = f"run {number} failed: {reason}"
            self.writes.submit(RUN_END, run_end(number, text, state="error", error=reason))

    def status(self) -> dict:
        """Everything a shifter's status view shows."""
        running = self.machine.state in (RunState.RUNNING, RunState.STOPPING)
        return {
            "state": self.machine.state.value,
            "run": self.machine.run,
            "elapsed_s": time.time() - self.run_started if running and self.run_started else 0,
            "processes": sorted(self.processes),
            "error": self.error,
            "monitor": self.snapshots.latest,
            "last_summary": self.last_summary,
        }

    # -- client requests ----------------------------------------------------------------------
    def serve_request(self, alive=lambda: None) -> str | None:
        """Answer one pending client request, if any; returns the command served."""
        if not self.rep.poll(0, zmq.POLLIN):
            return None
        try:
            request = json.loads(self.rep.recv())
            command = request.get("cmd")
        except (ValueError, AttributeError):
            self.rep.send_json({"ok": False, "error": "request is not a JSON object"})
            return None
        try:
            if command == "status":
                reply = self.status()
            elif command == "start":
                reply = {"run": self.start_run(str(request.get("comment", "")), alive)}
            elif command == "stop":
                reply = {"summary": self.stop_run(alive)}
            elif command == "shutdown":
                reply = {}
            else:
                raise RunControlError(f"unknown command {command!r}")
            self.rep.send_json({"ok": True, "error": "", **reply})
        except RunControlError as err:
            self.rep.send_json({"ok": False, "error": str(err)})
        return command

    def close(self) -> None:
        """Close every socket; store the queued writes (or journal them, see
        daq.store.durable)."""
        for sock in (self.router, self.rep):
            sock.close(0)
        self.snapshots.close()
        if "writes" in self.__dict__:
            self.writes.close()


def request(config: Config, data_dir: Path, command: str, timeout_s: float = 90.0, **fields):
    """Send one command to a running run control and return its reply."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(config.endpoint("run_control", data_dir))
    try:
        sock.send_json({"cmd": command, **fields})
        if not sock.poll(int(timeout_s * 1000), zmq.POLLIN):
            raise RunControlError(
                f"no answer from run control at {config.endpoint('run_control', data_dir)}"
                " (is `nudaq up` running with this data directory?)"
            )
        reply = sock.recv_json()
    finally:
        sock.close(0)
    if not reply.get("ok"):
        raise RunControlError(reply.get("error") or "run control refused")
    return reply
