"""Process supervision, crash-only: start nudaq's OS processes, restart those that die, stop
them all.

Every process of the system is a child of the supervisor (in ``nudaq up``), started as
``python -m module ARGS`` in a session of its own (Ctrl-C reaches only the supervisor).

- A child that dies is restarted after a backoff: ``supervision.restart_backoff_s``, doubled
  for every restart of it within ``supervision.crash_loop_window_s``, at most
  ``supervision.max_backoff_s``. Its death and its restart are reported to ``on_event`` (run
  control logs, alarms and enters them in the logbook, and lets a restarted process rejoin
  the run). A child started ``restartable=False`` (the simulated hardware) is not restarted:
  its death raises RunControlError, and the system stops.
- A crash loop, a child dying for the ``crash_loop_restarts``-th time within the window while
  being restarted, raises CrashLoop: the system stops cleanly with a critical alarm.
- The supervisor's own death takes its children with it: each child asks the kernel for
  SIGTERM when its parent dies (PR_SET_PDEATHSIG), which every nudaq process handles as a
  clean stop (an open run is ended, its last batches sent and recorded).
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from daq.core.config import Supervision
from daq.core.errors import RunControlError

log = logging.getLogger(__name__)

SERVICE_LAUNCHER = "daq.processes"
"""``python -m daq.processes SERVICE ARGS`` runs a registered service."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Ignored while the children stop (a second Ctrl-C must not orphan them)."""
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class CrashLoop(RunControlError):
    """A process kept dying: the system stops instead of restarting it again."""


@contextmanager
def stop_signals_ignored() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP are ignored inside, their handlers restored after.

    Only the main thread receives signals and may set their handlers; elsewhere this does
    nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def _die_with(parent_pid: int) -> Callable[[], None]:
    """What a child runs before exec: SIGTERM to it when its parent dies (also if the parent
    died before the request was made)."""

    def preexec() -> None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def exit_text(code: int) -> str:
    """How a process ended, from its exit status (negative: the signal)."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"was killed by signal {-code} ({name})"
    return f"exited with code {code}"


@dataclass
class Child:
    """One supervised process and its history."""

    name: str
    argv: list[str]
    popen: subprocess.Popen | None = None
    capture_stdout: bool = False
    stop_last: bool = False
    """Others talk to it (the simulated hardware): stopped only once they have exited."""
    restartable: bool = True
    restarts: deque[float] = field(default_factory=deque)
    """Wall times (time.monotonic s) of its restarts within the crash-loop window."""
    total_restarts: int = 0
    restart_due: float | None = None
    """When it is to be started again (time.monotonic s); None while it runs."""
    last_exit: str = ""

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid


@dataclass(frozen=True)
class Event:
    """Something that happened to a child: ``died`` (``detail``: how; ``clean``: exit 0) or
    ``restarted`` (``detail``: its new pid)."""

    kind: str
    child: Child
    detail: str
    clean: bool = False


class Supervisor:
    """Starts processes (``python -m module ...``, services by name), restarts those that die,
    stops them all (see the module doc)."""

    def __init__(
        self, data_dir: Path, policy: Supervision | None = None, pass_fds: tuple[int, ...] = ()
    ) -> None:
        self.data_dir = Path(data_dir)
        self.policy = policy or Supervision()
        self.pass_fds = pass_fds
        """Open files every child inherits (the data directory's lock, daq.control.lock)."""
        self.children: list[Child] = []
        self.stopping = False
        self.on_event: Callable[[Event], None] = lambda event: None

    def spawn(
        self,
        name: str,
        module: str,
        *args: str,
        capture_stdout: bool = False,
        stop_last: bool = False,
        restartable: bool = True,
    ) -> Child:
        """Start ``python -m module args`` as a new session (Ctrl-C reaches only us)."""
        argv = [sys.executable, "-m", module, *args]
        child = Child(name, argv, None, capture_stdout, stop_last, restartable)
        self.children.append(child)
        self._start(child)
        return child

    def spawn_service(self, name: str, service: str, *args: str, **options) -> Child:
        """Start the registered service ``service`` (daq.core.plugins) as process ``name``;
        ``options`` as for spawn."""
        return self.spawn(name, SERVICE_LAUNCHER, service, *args, **options)

    def _start(self, child: Child) -> None:
        child.popen = subprocess.Popen(
            child.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if child.capture_stdout else subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=self.pass_fds,
            preexec_fn=_die_with(os.getpid()),
        )
        child.restart_due = None
        log.info("started %s (pid %d): %s", child.name, child.pid, " ".join(child.argv[1:]))

    def read_json_line(self, child: Child, timeout_s: float) -> dict:
        """The first stdout line of a child, parsed as JSON (how the simulator and the web
        server give their addresses)."""
        deadline = time.monotonic() + timeout_s
        stream = child.popen.stdout
        while time.monotonic() < deadline:
            self.check()
            ready, _, _ = select.select([stream], [], [], 0.2)
            if ready:
                line = stream.readline()
                try:
                    return json.loads(line)
                except ValueError:
                    raise RunControlError(
                        f"{child.name} printed {line[:200]!r} instead of its JSON line"
                    ) from None
        raise RunControlError(f"{child.name} gave no answer within {timeout_s:.0f} s")

    def check(self) -> None:
        """Notice children that died and restart those whose backoff is over.

        Raises RunControlError naming a process that may not be restarted, CrashLoop naming
        one that keeps dying; nothing while stopping.
        """
        if self.stopping:
            return
        now = time.monotonic()
        for child in self.children:
            if child.restart_due is None:
                code = child.popen.poll()
                if code is not None:
                    self._died(child, code, now)
            elif now >= child.restart_due:
                self._restart(child, now)

    def _died(self, child: Child, code: int, now: float) -> None:
        child.last_exit = exit_text(code)
        what = f"process {child.name} (pid {child.pid}) {child.last_exit}"
        where = f"see {self.data_dir / 'logs' / (child.name + '.log')}"
        if child.popen.stdout:
            child.popen.stdout.close()
        if not child.restartable:
            raise RunControlError(f"{what}; {where}")
        window = self.policy.crash_loop_window_s
        while child.restarts and child.restarts[0] < now - window:
            child.restarts.popleft()
        deaths = len(child.restarts) + 1
        if deaths >= self.policy.crash_loop_restarts:
            child.restart_due = math.inf  # given up
            self.on_event(Event("died", child, child.last_exit, clean=code == 0))
            raise CrashLoop(f"{what}, {deaths} deaths within {window:g} s: a crash loop; {where}")
        backoff = min(
            self.policy.restart_backoff_s * 2 ** len(child.restarts), self.policy.max_backoff_s
        )
        child.restart_due = now + backoff
        log.error("%s; restarting it in %.1f s; %s", what, backoff, where)
        self.on_event(Event("died", child, child.last_exit, clean=code == 0))

    def _restart(self, child: Child, now: float) -> None:
        child.restarts.append(now)
        child.total_restarts += 1
        self._start(child)
        self.on_event(Event("restarted", child, f"pid {child.pid}"))

    def status(self) -> dict[str, dict]:
        """Per child: pid, whether it runs, its restarts, how it last ended."""
        return {
            c.name: {
                "pid": c.pid,
                "running": c.restart_due is None,
                "restarts": c.total_restarts,
                "last_exit": c.last_exit,
            }
            for c in self.children
        }

    def stop_all(self, timeout_s: float = 15.0) -> dict[str, int]:
        """SIGTERM every child, SIGKILL what does not exit in time; the exit codes by name.

        The children marked ``stop_last`` are stopped once the others have exited, so no
        readout sees its device vanish while it is still reading. Stop signals are ignored
        meanwhile: a second Ctrl-C can neither orphan a child nor cut short what a child
        does before it exits (ending an open run, sending its last batches).
        """
        self.stopping = True
        deadline = time.monotonic() + timeout_s
        codes: dict[str, int] = {}
        running = [c for c in self.children if c.restart_due is None]
        with stop_signals_ignored():
            for last in (False, True):
                codes |= self._stop([c for c in running if c.stop_last == last], deadline)
        return codes

    @staticmethod
    def _stop(children: list[Child], deadline: float) -> dict[str, int]:
        for child in children:
            if child.popen.poll() is None:
                os.kill(child.pid, signal.SIGTERM)
        codes = {}
        for child in children:
            try:
                codes[child.name] = child.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", child.name)
                child.popen.kill()
                codes[child.name] = child.popen.wait()
            if child.popen.stdout and not child.popen.stdout.closed:
                child.popen.stdout.close()
        return codes
