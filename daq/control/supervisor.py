"""Process supervision: start nudaq's OS processes, notice when one dies, stop them all."""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from daq.core.errors import RunControlError

log = logging.getLogger(__name__)

SERVICE_LAUNCHER = "daq.processes"
"""``python -m daq.processes SERVICE ARGS`` runs a registered service."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""Ignored while the children stop (a second Ctrl-C must not orphan them)."""


@contextmanager
def stop_signals_ignored() -> Iterator[None]:
    """SIGINT and SIGTERM are ignored inside, their handlers restored after.

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


@dataclass
class Child:
    """One supervised process."""

    name: str
    popen: subprocess.Popen
    stop_last: bool = False
    """Others talk to it (the simulated hardware): stopped only once they have exited."""

    @property
    def pid(self) -> int:
        return self.popen.pid


class Supervisor:
    """Starts processes (``python -m module ...``, services by name) and watches that they
    stay alive."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.children: list[Child] = []
        self.stopping = False

    def spawn(
        self,
        name: str,
        module: str,
        *args: str,
        capture_stdout: bool = False,
        stop_last: bool = False,
    ) -> Child:
        """Start ``python -m module args`` as a new session (Ctrl-C reaches only us)."""
        popen = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
            start_new_session=True,
        )
        child = Child(name, popen, stop_last)
        self.children.append(child)
        log.info("started %s (pid %d): python -m %s %s", name, popen.pid, module, " ".join(args))
        return child

    def spawn_service(
        self,
        name: str,
        service: str,
        *args: str,
        capture_stdout: bool = False,
        stop_last: bool = False,
    ) -> Child:
        """Start the registered service ``service`` (daq.core.plugins) as process ``name``."""
        return self.spawn(
            name,
            SERVICE_LAUNCHER,
            service,
            *args,
            capture_stdout=capture_stdout,
            stop_last=stop_last,
        )

    def read_json_line(self, child: Child, timeout_s: float) -> dict:
        """The first stdout line of a child, parsed as JSON (how the simulator gives its URLs)."""
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
        """Raise RunControlError naming the first process that exited (unless stopping)."""
        if self.stopping:
            return
        for child in self.children:
            code = child.popen.poll()
            if code is not None:
                how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
                raise RunControlError(
                    f"process {child.name} (pid {child.pid}) {how}; "
                    f"see {self.data_dir / 'logs' / (child.name + '.log')}"
                )

    def stop_all(self, timeout_s: float = 15.0) -> dict[str, int]:
        """SIGTERM every child, SIGKILL what does not exit in time; the exit codes by name.

        The children marked ``stop_last`` are stopped once the others have exited, so no
        readout sees its device vanish while it is still reading. SIGINT and SIGTERM are
        ignored meanwhile: a second Ctrl-C can neither orphan a child nor cut short what a
        child does before it exits (ending an open run, sending its last batches).
        """
        self.stopping = True
        deadline = time.monotonic() + timeout_s
        codes: dict[str, int] = {}
        with stop_signals_ignored():
            for last in (False, True):
                codes |= self._stop([c for c in self.children if c.stop_last == last], deadline)
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
            if child.popen.stdout:
                child.popen.stdout.close()
        return codes
