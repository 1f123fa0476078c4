"""Run control: the state machine served over ZeroMQ, delivering transitions to every process.

Requests arrive from REQ clients on a ROUTER socket (``network.run_control``) as JSON
``{"cmd": ...}``: ``status``, ``start`` (optional ``comment``), ``stop``, ``shutdown``; every
reply is ``{"ok": bool, "error": str, ...}``. While a transition goes on (a start or stop can
take seconds), status requests are still answered and other commands refused as busy.
Transitions go to the processes over the ROUTER of daq.control.transitions, in a fixed
order: at begin the builder first, then slow control, the vetoes and last the HPGe ADC (so
every veto is live before the first HPGe pulse); at end the reverse. The builder's end-of-run
acknowledgement carries the run summary.

Processes may die and come back during a run (daq.control.supervisor restarts them): run
control forgets a process that died, skips it in transitions while it is away (the builder
does not wait for its end-of-run), and when it says hello again lets it rejoin the open run.
A readout or slow control that crashed rejoins as a new incarnation of its stream
(daq.build.eventbuilder): run control announces the incarnation to the builder, then begins
the run on the process, so the time it was away becomes a restart gap of its stream. A
participant that exited cleanly while the run went on (a stop signal of its own: it sent its
end-of-run, and a stream's end is final) is brought back by ending the run and beginning the
next. A restarted builder is told to resume the open run from its raw file.

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
STREAM_OF = {
    "slowcontrol": "reactor",
    "readout-crv": "crv",
    "readout-acv": "acv",
    "readout-hpge": "hpge",
}
"""The stream each participant but the builder sends."""
ACK_TIMEOUT_S = 20.0
END_TIMEOUT_S = 60.0


@dataclass
class ProcessInfo:
    """A process that said hello on the transition channel."""

    name: str
    pid: int


class ProcessGone(RunControlError):
    """The process a transition was for died meanwhile."""


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
        self.incarnations: dict[str, int] = {}
        """Per participant, its incarnation in the open run (0 until it is restarted)."""
        self.away: dict[str, bool] = {}
        """Participants that died during the open run: True if they ended their part first."""
        self.returned: list[str] = []
        """Participants back after dying during the open run, waiting to rejoin it."""
        self.requests: list[tuple[str, dict]] = []
        """Requests of processes: the builder asks to stop a run it had to close."""
        self.supervision: dict[str, dict] = {}
        """The supervisor's view of every process (daq.control.supervisor.Supervisor.status)."""
        self._next_id = 1
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a restarted process takes its name
        self.router.bind(config.endpoint("transitions", data_dir))
        self.clients = self.ctx.socket(zmq.ROUTER)  # REQ clients, answered in any order
        self.clients.setsockopt(zmq.LINGER, 0)
        self.clients.bind(config.endpoint("run_control", data_dir))
        self.snapshots = SnapshotSubscriber(self.ctx, config.endpoint("monitor", data_dir))

    # -- the transition channel -------------------------------------------------------------
    def _handle_process_message(self, identity: bytes, message: dict) -> dict | None:
        name = identity.decode()
        if message.get("type") == "hello":
            self.processes[name] = ProcessInfo(name, int(message.get("pid", 0)))
            log.info("process %s (pid %s) joined", name, message.get("pid"))
            if name in self.away and name not in self.returned:
                self.returned.append(name)
            return None
        if message.get("type") == "request":
            self.requests.append((name, message))
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
            if name not in self.processes:
                raise ProcessGone(f"process {name} died before it acknowledged {kind}")
            self._serve_while_busy()
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
        from daq.store.alarms import SUPERVISOR_ALARM, apply_alarm_change
        from daq.store.durable import DurableWriter
        from daq.store.runs import LOGBOOK, RUN_END, apply_logbook, apply_run_end

        appliers = {
            RUN_END: apply_run_end,
            LOGBOOK: apply_logbook,
            SUPERVISOR_ALARM: apply_alarm_change,
        }
        return DurableWriter(
            self.engine, self.data_dir, "runcontrol", appliers, self.config.database
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
        self.incarnations = {}
        self.away = {}
        self.returned = []
        try:
            for name in self.participants:
                self._begin_on(name, number, alive)
        except RunControlError as err:
            self.fail(str(err))
            raise
        log.info("run %d started", number)
        return number

    def _begin_on(self, name: str, number: int, alive) -> None:
        """Begin the run on one participant; one that is away (dead, being restarted) joins
        when it is back (the builder may not be away: nothing is recorded without it)."""
        if name != "builder" and name not in self.processes:
            log.warning("run %d: %s is not connected; it joins when it is back", number, name)
            self.away[name] = False
            return
        try:
            self.transition(name, "begin", ACK_TIMEOUT_S, alive, run=number)
        except ProcessGone:
            if name == "builder":
                raise
            self.away[name] = False

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

    def stop_run(self, alive=lambda: None, reason: str = "") -> dict:
        """End the current run on every participant (``reason``: why, when not asked by a
        shifter); returns the builder's run summary. The run's end is a queued write: stored
        now, or when the database is back."""
        from daq.store.runs import RUN_END, run_end

        self.machine.apply("stop")
        number = self.machine.run
        summary: dict = {}
        try:
            for name in reversed(self.participants):
                if name != "builder":
                    self._end_on(name, number, alive)
                    continue
                absent = [STREAM_OF[n] for n in self.participants if n in self.away]
                summary = self.transition(
                    name, "end", END_TIMEOUT_S, alive, run=number, absent=absent
                )
        except RunControlError as err:
            self.fail(str(err))
            raise
        text = f"run {number} stopped{': ' + reason if reason else ''}"
        self.writes.submit(RUN_END, run_end(number, text, error=reason))
        self.machine.apply("stopped")
        self.last_summary = summary
        log.info("run %d stopped: %s", number, summary)
        return summary

    def _end_on(self, name: str, number: int, alive) -> None:
        """End the run on a participant; one that is away has no part to end."""
        if name in self.processes and name not in self.away:
            try:
                self.transition(name, "end", END_TIMEOUT_S, alive, run=number)
                return
            except ProcessGone:
                pass
        self.away.setdefault(name, False)
        log.warning("run %d: %s is away: its stream ends at its last batch", number, name)

    # -- processes that died and came back ------------------------------------------------------
    def process_died(self, name: str, how: str, clean: bool) -> None:
        """The supervisor saw ``name`` die (``clean``: it exited 0, ending its part of an open
        run): forget it until it says hello again."""
        self.processes.pop(name, None)
        running = self.machine.state is RunState.RUNNING
        if running and name in self.participants:
            self.away[name] = clean or self.away.get(name, False)
            if name in self.returned:
                self.returned.remove(name)
        self._logbook(f"process {name} {how}; restarting it", self.machine.run)

    def serve_returns(self, alive=lambda: None) -> None:
        """Let the participants that came back rejoin the open run (see the module doc)."""
        while self.returned:
            name = self.returned.pop(0)
            ended_part = self.away.pop(name, False)
            if self.machine.state is not RunState.RUNNING:
                continue
            number = self.machine.run
            try:
                if name == "builder":
                    self.transition(name, "begin", ACK_TIMEOUT_S, alive, run=number, resume=True)
                    self._logbook(f"builder restarted: resumed run {number}", number)
                elif ended_part:
                    self._logbook(
                        f"{name} ended its part of run {number} and came back: the run ends,"
                        " the next begins",
                        number,
                    )
                    self.stop_run(alive)
                    self.start_run(f"after {name} came back", alive)
                else:
                    self._rejoin(name, number, alive)
            except ProcessGone:
                self.away[name] = ended_part
            except RunControlError as err:
                if name == "builder":
                    raise
                self.away[name] = ended_part
                self._logbook(f"{name} could not rejoin run {number}: {err}", number)

    def serve_process_requests(self, alive=lambda: None) -> None:
        """Act on what processes asked for: a stop of the open run (the builder closed it, and
        why: its disk is full), with the reason in the run's record and the logbook."""
        while self.requests:
            name, request = self.requests.pop(0)
            run, reason = request.get("run"), str(request.get("reason", ""))
            if request.get("cmd") != "stop" or run != self.machine.run:
                log.warning("ignored a request of %s: %s", name, request)
                continue
            if self.machine.state is RunState.RUNNING:
                self._logbook(f"{name} stopped run {run}: {reason}", run)
                self.stop_run(alive, reason=f"stopped by {name}: {reason}")

    def _rejoin(self, name: str, number: int, alive) -> None:
        incarnation = self.incarnations.get(name, 0) + 1
        self.incarnations[name] = incarnation
        stream = STREAM_OF[name]
        self.transition(
            "builder",
            "rejoin",
            ACK_TIMEOUT_S,
            alive,
            run=number,
            stream=stream,
            incarnation=incarnation,
        )
        info = self.transition(
            name, "begin", ACK_TIMEOUT_S, alive, run=number, incarnation=incarnation
        )
        self._logbook(
            f"{name} restarted: rejoined run {number} as incarnation {incarnation}"
            f" (device start {info.get('t_start_ns', '?')} ns); its stream is uncovered"
            " while it was away",
            number,
        )

    def _logbook(self, text: str, number: int | None) -> None:
        """An automatic logbook entry of run control (a queued write), also logged."""
        from daq.store.runs import LOGBOOK, logbook_entry

        log.warning("%s", text)
        self.writes.submit(LOGBOOK, logbook_entry("run control", text, number))

    def supervisor_alarm(
        self, name: str, severity: str = "", message: str = "", number: int | None = None
    ) -> None:
        """Raise (with a severity) or clear one of the supervisor's alarms (a queued write,
        daq.store.alarms)."""
        from daq.store.alarms import SUPERVISOR_ALARM, SUPERVISOR_PREFIX, alarm_change

        change = alarm_change(SUPERVISOR_PREFIX + name, severity, message, number)
        self.writes.submit(SUPERVISOR_ALARM, change)

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
            "supervision": self.supervision,
            "error": self.error,
            "monitor": self.snapshots.latest,
            "last_summary": self.last_summary,
        }

    # -- client requests ----------------------------------------------------------------------
    def serve_request(self, alive=lambda: None) -> str | None:
        """Answer one pending client request, if any; returns the command served."""
        received = self._receive()
        if received is None:
            return None
        client, command, request = received
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
            self._reply(client, {"ok": True, "error": "", **reply})
        except RunControlError as err:
            self._reply(client, {"ok": False, "error": str(err)})
        return command

    def _serve_while_busy(self) -> None:
        """During a transition: status requests are answered, commands refused as busy (so a
        shifter's status, and the monitor's, never wait for a run to end)."""
        while (received := self._receive()) is not None:
            client, command, _ = received
            if command == "status":
                self._reply(client, {"ok": True, "error": "", **self.status()})
            else:
                state = self.machine.state.value
                self._reply(client, {"ok": False, "error": f"run control is busy ({state})"})

    def _receive(self) -> tuple[bytes, str | None, dict] | None:
        """The next client request (client, command, request), if one is waiting; one that
        is not a JSON object is answered with an error here."""
        if not self.clients.poll(0, zmq.POLLIN):
            return None
        client, *_, payload = self.clients.recv_multipart()
        try:
            request = json.loads(payload)
            return client, request.get("cmd"), request
        except (ValueError, AttributeError):
            self._reply(client, {"ok": False, "error": "request is not a JSON object"})
            return self._receive()

    def _reply(self, client: bytes, reply: dict) -> None:
        self.clients.send_multipart([client, b"", json.dumps(reply).encode()])

    def close(self) -> None:
        """Close every socket; store the queued writes (or journal them, see
        daq.store.durable)."""
        for sock in (self.router, self.clients):
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
