"""A small front-end stand-in for driver and readout tests: speaks daq.formats.protocol in a thread.

It serves one connection at a time on a TCP port (``socket://127.0.0.1:PORT``, a new
connection replaces the old one, so reconnects work) or on a pty. Pulses carry their global
sequence number in ``adc`` so a test can check that every pulse arrived exactly once, in
order. ``mangle(counter, frame_bytes) -> bytes`` lets a test damage chosen frames or add
noise between them; everything the stub sent is kept in ``sent`` as ground truth. Given a
``POWER`` setting it also answers ``READ?`` like the slow-control device.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from daq.core.records import PULSE_DTYPE
from daq.formats.protocol import FRAME_DATA, FRAME_END, MAX_RECORDS, encode_frame


@dataclass
class SentFrame:
    kind: int
    counter: int
    watermark_ns: int
    dead_ns: int
    pulses: np.ndarray


@dataclass
class StubFrontend:
    """A simulated list-mode front-end: ``rate_hz`` pulses/s, a frame every ``frame_ms``."""

    transport: str = "tcp"
    rate_hz: float = 1000.0
    frame_ms: int = 10
    dead_ns_per_frame: int = 1000
    mangle: Callable[[int, bytes], bytes] | None = None
    drop_end: bool = False
    garble_replies: bool = False
    settings: dict = field(default_factory=lambda: {"THR": "0", "FRAME_MS": "10", "RTRATE": "0"})
    sent: list[SentFrame] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    start_times: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.t0 = time.monotonic_ns()
        self.paused = threading.Event()
        self.next_adc = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conn: socket.socket | None = None
        self._streaming = False
        if self.transport == "tcp":
            self._server = socket.create_server(("127.0.0.1", 0))
            self.url = f"socket://127.0.0.1:{self._server.getsockname()[1]}"
        else:
            self._server = None
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)
            self.url = os.ttyname(self._slave)
        self._rng = np.random.default_rng(7)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    # -- ground truth -------------------------------------------------------------------------
    def clock(self) -> int:
        return time.monotonic_ns() - self.t0 + 10**9

    @property
    def data_frames(self) -> list[SentFrame]:
        return [f for f in self.sent if f.kind == FRAME_DATA]

    def sent_pulses(self) -> np.ndarray:
        with self._lock:
            frames = [f.pulses for f in self.sent]
        return np.concatenate(frames) if frames else np.zeros(0, PULSE_DTYPE)

    # -- control by the test ------------------------------------------------------------------
    def disconnect(self) -> None:
        """Drop the line as a dying device server would (TCP only)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._streaming = False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.disconnect()
        if self._server is not None:
            self._server.close()
        else:
            os.close(self._master)
            os.close(self._slave)

    # -- the device ---------------------------------------------------------------------------
    def _fd(self):
        return self._conn if self._server is not None else self._master

    def _write(self, data: bytes) -> None:
        if self._server is not None:
            if self._conn is not None:
                try:
                    self._conn.sendall(data)
                except OSError:
                    self._conn = None
                    self._streaming = False
            return
        view = memoryview(data)
        while view:
            view = view[os.write(self._master, view) :]

    def _serve(self) -> None:
        buf = b""
        next_frame = time.monotonic()
        while not self._stop.is_set():
            fds = [self._server] if self._server is not None else []
            if self._fd() is not None:
                fds.append(self._fd())
            wait = max(0.0, next_frame - time.monotonic()) if self._streaming else 0.05
            ready, _, _ = select.select(fds, [], [], wait)
            with self._lock:
                if self._server is not None and self._server in ready:
                    if self._conn is not None:
                        self._conn.close()
                    self._conn, _ = self._server.accept()
                    self._streaming = False
                    buf = b""
                    continue
                if self._fd() is not None and self._fd() in ready:
                    chunk = self._read()
                    if chunk is None:
                        buf = b""
                        continue
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        self._command(line.decode().strip())
                if self._streaming and time.monotonic() >= next_frame:
                    next_frame = time.monotonic() + self.frame_ms / 1000
                    if not self.paused.is_set():
                        self._send_frame(FRAME_DATA)

    def _read(self) -> bytes | None:
        if self._server is not None:
            data = self._conn.recv(65536)
            if not data:
                self._conn.close()
                self._conn = None
                self._streaming = False
                return None
            return data
        return os.read(self._master, 65536)

    def _command(self, line: str) -> None:
        self.commands.append(line)
        words = line.split()
        if self._streaming:
            if words == ["STOP"]:
                self._send_frame(FRAME_END)
                self._streaming = False
            return
        if words == ["*IDN?"]:
            self._reply("OK NUDAQ,STUB,0001,1.0")
        elif words == ["CONF?"]:
            self._reply("OK " + " ".join(f"{k}={v}" for k, v in self.settings.items()))
        elif len(words) == 3 and words[0] == "CONF" and words[1] in self.settings:
            self.settings[words[1]] = words[2]
            self._reply("OK")
        elif words == ["CLOCK?"]:
            self._reply(f"OK {self.clock()}")
        elif words == ["READ?"] and "POWER" in self.settings:
            power = self.settings["POWER"]
            self._reply(
                f"OK t_ns={self.clock()} power_MW={power} hv_V=3000 ln2_pct=80.5 temp_C=21.25"
            )
        elif words == ["START"]:
            self._counter = 0
            self._last_wm = self.clock()
            self.start_times.append(self._last_wm)
            self._reply(f"OK {self._last_wm}")
            self._streaming = True
        else:
            self._reply(f"ERR unknown command {line!r}")

    def _reply(self, text: str) -> None:
        garbage = b"\xfe\x13#" if self.garble_replies else b""
        self._write(garbage + text.encode() + b"\n")

    def _send_frame(self, kind: int) -> None:
        now = self.clock()
        pulses = np.zeros(0, PULSE_DTYPE)
        if kind == FRAME_DATA:
            n = min(MAX_RECORDS, self._rng.poisson(self.rate_hz * (now - self._last_wm) / 1e9))
            pulses = np.zeros(n, PULSE_DTYPE)
            pulses["t_ns"] = np.sort(self._rng.integers(self._last_wm, now, n))
            pulses["adc"] = np.arange(self.next_adc, self.next_adc + n)
            pulses["channel"] = 1
            self.next_adc += n
        dead = self.dead_ns_per_frame if kind == FRAME_DATA else 0
        data = encode_frame(kind, self._counter, now, dead, pulses)
        self.sent.append(SentFrame(kind, self._counter, now, dead, pulses))
        self._counter += 1
        self._last_wm = now
        if self.mangle is not None:
            data = self.mangle(self.sent[-1].counter, data)
        if kind == FRAME_END and self.drop_end:
            return
        self._write(data)
