"""Simulated serial devices: the HPGe ADC, the two veto digitizers and slow control.

Each device speaks daq.formats.protocol byte for byte on its own line, a TCP socket
(``socket://127.0.0.1:PORT``, one client at a time, a new client replaces the old one) or a
pty (the slave's path), so the real drivers run against them through
``serial.serial_for_url``. Devices do no I/O of their own: the crate's event loop
(hardware_sim.crate) moves the bytes and calls them.

List-mode front-ends (``NUDAQ,HPGE-ADC``, ``NUDAQ,ACV-DIGI``, ``NUDAQ,CRV-DIGI``)
    Settings: ``THR`` (ADC counts; lower pulses are not sent), ``FRAME_MS`` (wall ms between
    frames), ``RTRATE`` (Hz, HPGe ADC only). ``START`` answers ``OK <t_start_ns>``; from then
    on every pulse with t >= t_start is sent in DATA frames, at most MAX_RECORDS per frame, at
    least every FRAME_MS (heartbeats when empty); a frame's watermark is the time up to which
    the crate has generated (START and STOP take effect at that time too), its ``dead_ns``
    the ADC dead time inside [previous watermark, watermark). ``STOP`` sends the remaining
    pulses and an END frame whose watermark is the stop time, then the device is back in text
    mode (even during an injected stall). While running, other lines are ignored. A device
    that is not running discards the pulses it is handed (the hardware is not acquiring). THR
    filters after the ADC: pulses below it still cost dead time.

    On demand (tests, fault studies; from another thread through hardware_sim.crate.SimCrate
    .call): ``hold_silent`` keeps the device from sending frames, as a stall does (pulses
    wait, STOP is still answered); ``disconnect`` drops its line as a dying device server
    would; ``line_hook`` changes chosen frames' bytes on their way to the line.

Slow control (``NUDAQ,SLOWCTRL``, text only)
    ``READ?`` -> ``OK t_ns=<clock> power_MW=<> hv_V=<> ln2_pct=<> temp_C=<>``. The power
    follows the sim.reactor schedule (simulated s since the crate started) until
    ``CONF POWER <MW>`` overrides it; readings carry 0.5 % noise, the generator uses the true
    value. ``CONF HV <V>`` sets the bias (an HV trip). The LN2 level falls 10 % per simulated
    day from 95 % and is refilled at 30 %.

Ground truth kept on request (``record=True``, in memory)
    Every device logs the command lines it receives (``commands``); a list-mode device every
    START time (``starts``) and every frame it sent with what became of it on the line
    (``frames``, SentFrame: damaged, lost or delivered); the slow-control device every
    ``READ?`` with its true values (``readings``, ReadingRecord).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from daq.core.config import Faults, Frontend, ReactorPeriod, Sim
from daq.core.records import PULSE_DTYPE, Stream
from daq.formats.protocol import FRAME_DATA, FRAME_END, MAX_RECORDS, encode_frame
from hardware_sim.faults import FaultInjector
from hardware_sim.generator import dead_time_ns

log = logging.getLogger(__name__)

FIRMWARE = "1.0"
MODELS = {
    Stream.HPGE: "HPGE-ADC",
    Stream.ACV: "ACV-DIGI",
    Stream.CRV: "CRV-DIGI",
}
SLOWCONTROL_MODEL = "SLOWCTRL"
MAX_LINE_BYTES = 1024
"""A command line longer than this is garbage: it is thrown away with an ERR."""
OUTPUT_LIMIT_BYTES = 256 << 20
"""Bytes a device holds for a host that does not read before it throws frames away."""
READ_BYTES = 65536
POWER_NOISE = 0.005
"""Relative noise (standard deviation) of the power reading."""
LN2_FULL_PCT = 95.0
LN2_REFILL_PCT = 30.0
LN2_FALL_PCT_PER_DAY = 10.0
TEMP_C = 22.0
TEMP_NOISE_C = 0.05
HV_NOISE_V = 0.5
"""Standard deviations of the temperature and bias readings."""


class Clock(Protocol):
    """What devices need from the crate: the common clock (ns), its start ``t0_ns`` and
    ``t_generated_ns``, the time up to which pulses have been generated and handed out."""

    t0_ns: int
    t_generated_ns: int

    def now_ns(self) -> int: ...


# -- lines ----------------------------------------------------------------------------------


class TcpLine:
    """A listening TCP socket on 127.0.0.1 serving one client at a time (non-blocking)."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.setblocking(False)
        self._conn: socket.socket | None = None
        self._out = bytearray()
        self.url = f"socket://127.0.0.1:{self._server.getsockname()[1]}"

    def read_fds(self) -> list:
        return [self._server] + ([self._conn] if self._conn is not None else [])

    def wants_write(self) -> bool:
        return self._conn is not None and bool(self._out)

    def write_fd(self):
        return self._conn

    @property
    def pending_out(self) -> int:
        return len(self._out)

    def on_readable(self, fd) -> tuple[bytes, bool]:
        """(bytes from the host, whether the host changed: connected or gone)."""
        if fd is self._server:
            try:
                conn, _ = self._server.accept()
            except BlockingIOError:
                return b"", False
            self.drop()
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conn = conn
            log.info("%s: host connected", self.url)
            return b"", True
        try:
            data = self._conn.recv(READ_BYTES)
        except BlockingIOError:
            return b"", False
        except OSError:
            data = b""
        if not data:
            log.info("%s: host disconnected", self.url)
            self.drop()
            return b"", True
        return data, False

    def write(self, data: bytes) -> bool:
        """Queue bytes for the host; False (bytes discarded) when nobody is connected."""
        if self._conn is None:
            return False
        self._out += data
        return True

    def flush(self) -> bool:
        """Send what the socket takes now; False when the host is gone."""
        try:
            sent = self._conn.send(self._out)
        except BlockingIOError:
            return True
        except OSError:
            self.drop()
            return False
        del self._out[:sent]
        return True

    def drop(self) -> int:
        """Close the connection to the host (it may connect again). Bytes already handed to
        the socket still reach the host; returns how many queued bytes were thrown away."""
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        discarded = len(self._out)
        self._out.clear()
        return discarded

    def close(self) -> None:
        self.drop()
        self._server.close()


class PtyLine:
    """A pseudo-terminal: the host opens the slave path, the device reads/writes the master.

    The slave stays open here too, so the line survives hosts that come and go; a pty cannot
    tell the device that its host changed.
    """

    def __init__(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self._out = bytearray()
        self.url = os.ttyname(self._slave)

    def read_fds(self) -> list:
        return [self._master]

    def wants_write(self) -> bool:
        return bool(self._out)

    def write_fd(self):
        return self._master

    @property
    def pending_out(self) -> int:
        return len(self._out)

    def on_readable(self, fd) -> tuple[bytes, bool]:
        try:
            return os.read(self._master, READ_BYTES), False
        except BlockingIOError:
            return b"", False

    def write(self, data: bytes) -> bool:
        self._out += data
        return True

    def flush(self) -> bool:
        try:
            sent = os.write(self._master, self._out)
        except BlockingIOError:
            return True
        except OSError as err:
            if err.errno != errno.EIO:
                raise
            return True
        del self._out[:sent]
        return True

    def drop(self) -> int:
        """A pty cannot hang up: forget what was not yet written (returns how much)."""
        discarded = len(self._out)
        self._out.clear()
        return discarded

    def close(self) -> None:
        os.close(self._master)
        os.close(self._slave)


Line = TcpLine | PtyLine


def make_line(transport: str) -> Line:
    """A new line of the given transport ('tcp' or 'pty')."""
    return TcpLine() if transport == "tcp" else PtyLine()


# -- ground truth records -------------------------------------------------------------------


@dataclass(slots=True)
class SentFrame:
    """One frame a list-mode device sent (``ListModeDevice.frames``): as encoded, and its fate.

    ``delivered`` frames reach a host reading the line intact. Bytes lost because the host
    itself went away (it closed the connection) are not tracked: no host reads them.
    """

    kind: int
    counter: int
    watermark_ns: int
    dead_ns: int
    pulses: np.ndarray
    start_ns: int
    """t_start of the acquisition (START) the frame belongs to."""
    damaged: bool = False
    """Its bytes went onto the line changed (a fault or the line hook): no reader decodes it,
    and the frame counter shows the gap."""
    lost: bool = False
    """Its bytes never went out: thrown away (output full, nobody connected), a lost END
    frame, dropped by the line hook, or still queued when the device dropped the line."""
    line_end: int = field(default=0, repr=False)
    """Bytes the device had queued on its line up to the end of this frame (0: none)."""

    @property
    def delivered(self) -> bool:
        """Whether a host reading the line gets this frame intact."""
        return not (self.damaged or self.lost)


@dataclass(frozen=True, slots=True)
class ReadingRecord:
    """One ``READ?`` answered (``SlowControlDevice.readings``): true values and the reply."""

    t_ns: int
    power_MW: float
    hv_V: float
    ln2_pct: float
    temp_C: float
    reply: str
    """The reply line as sent: the true values with their reading noise."""


# -- devices --------------------------------------------------------------------------------


class TextDevice:
    """The text half of daq.formats.protocol: line splitting, ``*IDN?``, ``CLOCK?``, ``CONF``.

    ``settings`` maps each ``CONF`` key to its current value; ``_parsers`` to a function that
    converts and checks a new value (raising ValueError with the reason). With ``record``,
    ``commands`` logs every command line received (else it is None).
    """

    model = ""

    def __init__(self, name: str, clock: Clock, line: Line, record: bool = False) -> None:
        self.name = name
        self.clock = clock
        self.line = line
        self.serial = f"SIM-{name.upper()}-0001"
        self.settings: dict[str, float | int] = {}
        self.commands: list[str] | None = [] if record else None
        self._parsers: dict[str, Callable[[str], float | int]] = {}
        self._inbuf = bytearray()
        self._line_pos = 0
        """Bytes this device has queued on its line so far."""

    @property
    def url(self) -> str:
        return self.line.url

    @property
    def line_bytes(self) -> int:
        """Bytes this device has queued on its line so far (replies and frames, noise and all)."""
        return self._line_pos

    def receive(self, data: bytes) -> None:
        """Bytes from the host: run every complete command line."""
        self._inbuf += data
        while (end := self._inbuf.find(b"\n")) >= 0:
            raw = bytes(self._inbuf[:end])
            del self._inbuf[: end + 1]
            text = raw.decode("ascii", errors="replace").strip()
            if self.commands is not None:
                self.commands.append(text)
            self.command(text)
        if len(self._inbuf) > MAX_LINE_BYTES:
            self._inbuf.clear()
            self.reply(f"ERR command longer than {MAX_LINE_BYTES} bytes")

    def host_changed(self) -> None:
        """A new host (or none): forget partial input."""
        self._inbuf.clear()

    def reply(self, text: str) -> None:
        self._write((text + "\n").encode("ascii"))

    def _write(self, data: bytes) -> bool:
        """Queue bytes on the line; False when they were discarded (nobody connected)."""
        if not self.line.write(data):
            return False
        self._line_pos += len(data)
        return True

    def disconnect(self) -> None:
        """Drop the line now, as a dying device server would (TCP: the host sees the
        connection close and may connect again; a pty only loses what was not yet written)."""
        self.line.drop()

    def close(self) -> None:
        """Close the line for good."""
        self.line.close()

    def command(self, text: str) -> None:
        """One command line in text mode."""
        words = text.split()
        if not words:
            return
        handler = {
            "*IDN?": self._idn,
            "CLOCK?": self._clock,
            "CONF?": self._conf_query,
            "CONF": self._conf,
        }.get(words[0].upper())
        if handler is None:
            handler = self._extra_commands().get(words[0].upper())
        if handler is None:
            self.reply(f"ERR unknown command {words[0]!r}")
            return
        handler(words[1:])

    def _extra_commands(self) -> dict[str, Callable[[list[str]], None]]:
        return {}

    def _idn(self, args: list[str]) -> None:
        self.reply(f"OK NUDAQ,{self.model},{self.serial},{FIRMWARE}")

    def _clock(self, args: list[str]) -> None:
        self.reply(f"OK {self.clock.now_ns()}")

    def _conf_query(self, args: list[str]) -> None:
        self.reply("OK " + " ".join(f"{k}={v}" for k, v in self.settings.items()))

    def _conf(self, args: list[str]) -> None:
        if len(args) != 2:
            self.reply("ERR usage: CONF <KEY> <VALUE>")
            return
        key, value = args[0].upper(), args[1]
        if key not in self._parsers:
            self.reply(f"ERR unknown setting {key!r}; known: {', '.join(self._parsers)}")
            return
        try:
            self.settings[key] = self._parsers[key](value)
        except ValueError as err:
            self.reply(f"ERR {key} {value!r}: {err}")
            return
        log.info("%s: %s = %s", self.name, key, self.settings[key])
        self.reply("OK")


def _bounded(kind: type, lo: float, hi: float = float("inf")) -> Callable[[str], float | int]:
    """A CONF value parser for numbers of ``kind`` in [lo, hi]."""

    def parse(text: str) -> float | int:
        value = kind(text)
        if not lo <= value <= hi:
            raise ValueError(f"must be within [{lo}, {hi}]")
        return value

    return parse


class ListModeDevice(TextDevice):
    """A list-mode front-end (HPGe ADC or veto digitizer), see the module docstring.

    The crate hands it every generated slice through ``feed`` and calls ``tick`` in its loop;
    ``dead_ns`` is the ADC conversion dead time (0 for the veto digitizers). With ``record``,
    ``frames`` and ``starts`` log every frame sent and every START time (else they are None).

    ``line_hook(frame, data) -> bytes``, when set, gets each frame's SentFrame and the bytes
    about to go onto the line (after the injected faults) and returns the bytes to send
    instead (b"" for none): damage to chosen frames for tests and fault studies.
    """

    line_hook: Callable[[SentFrame, bytes], bytes] | None = None

    def __init__(
        self,
        stream: Stream,
        clock: Clock,
        line: Line,
        frontend: Frontend,
        faults: Faults,
        dead_ns: int,
        rt_rate_hz: float,
        seed: int,
        record: bool = False,
    ) -> None:
        super().__init__(stream.name.lower(), clock, line, record)
        self.stream = stream
        self.model = MODELS[stream]
        self.dead_ns = dead_ns
        self.faults = FaultInjector(faults, np.random.default_rng([seed, int(stream)]))
        self.settings = {"THR": frontend.threshold_adc, "FRAME_MS": frontend.frame_ms}
        self._parsers = {"THR": _bounded(int, 0, 2**32 - 1), "FRAME_MS": _bounded(int, 1, 1000)}
        if stream == Stream.HPGE:
            self.settings["RTRATE"] = rt_rate_hz
            self._parsers["RTRATE"] = _bounded(float, 0.0, 1e6)
        self.running = False
        self.silent = False
        """Held silent (hold_silent): no frames are sent until released."""
        self.frames: list[SentFrame] | None = [] if record else None
        self.starts: list[int] | None = [] if record else None
        self._counter = 0
        self._t_start = 0
        self._watermark = 0
        self._next_frame_s = 0.0
        self._queue: list[np.ndarray] = []
        self._triggers = [np.array([np.iinfo(np.int64).min // 2], dtype=np.int64)]
        """Accepted ADC triggers (ns) not yet accounted in a frame, led by the one before."""

    @property
    def fault_counts(self) -> dict[str, int]:
        """Everything injected on this device's line (see hardware_sim.faults)."""
        return self.faults.counts.as_dict()

    @property
    def rt_rate_hz(self) -> float:
        """The random-trigger rate (Hz) the ADC injects (0 for veto digitizers)."""
        return float(self.settings.get("RTRATE", 0.0))

    @property
    def frame_s(self) -> float:
        return self.settings["FRAME_MS"] / 1000.0

    def command(self, text: str) -> None:
        if not self.running:
            super().command(text)
        elif text.upper() == "STOP":
            self._stop()
        elif text:
            log.warning("%s: ignoring %r while running", self.name, text)

    def _extra_commands(self) -> dict[str, Callable[[list[str]], None]]:
        return {"START": self._start, "STOP": self._stop_idle}

    def reply(self, text: str) -> None:
        self._write(self.faults.reply((text + "\n").encode("ascii")))

    def hold_silent(self, silent: bool = True) -> None:
        """Send no frames (not even heartbeats) until released; acquisition goes on and the
        pulses wait, as in a stall. Text commands and STOP are still answered."""
        log.info("%s: %s", self.name, "held silent" if silent else "released")
        self.silent = silent

    def disconnect(self) -> None:
        """Drop the line now (see TextDevice.disconnect); acquisition stops. Frames still
        queued on the line are lost (marked so in ``frames``)."""
        log.info("%s: dropping the line", self.name)
        self._drop_line()
        self._idle()

    def close(self) -> None:
        self._drop_line()
        self.line.close()

    def _drop_line(self) -> None:
        discarded = self.line.drop()
        if not discarded or self.frames is None:
            return
        cut = self._line_pos - discarded
        for sent in reversed(self.frames):
            if sent.line_end > cut:
                sent.lost = True
            elif sent.line_end:
                break

    def host_changed(self) -> None:
        super().host_changed()
        if self.running:
            log.info("%s: host changed while running: acquisition stopped", self.name)
        self._idle()

    def feed(self, pulses: np.ndarray) -> None:
        """The next recorded pulses of this stream, as generated (sorted, t_ns >= all before)."""
        if self.dead_ns and len(pulses):
            self._triggers.append(pulses["t_ns"])
            if not self.running:
                self._triggers = [pulses["t_ns"][-1:]]
        if not self.running:
            return
        keep = (pulses["t_ns"] >= self._t_start) & (pulses["adc"] >= self.settings["THR"])
        if keep.any():
            self._queue.append(pulses[keep])

    def tick(self, wall_s: float) -> None:
        """Send the frames that are due at wall time wall_s (monotonic s)."""
        if not self.running:
            return
        # data time streamed since START (the generated clock, which lags the wall clock when
        # the generator falls behind: a lag must not count as running)
        running_s = (self.clock.t_generated_ns - self._t_start) * 1e-9
        if self.faults.disconnect_due(running_s):
            log.info("%s: injected disconnect after %.3g s running", self.name, running_s)
            self.faults.counts.disconnects += 1
            self._drop_line()
            self._idle()
            return
        if wall_s < self._next_frame_s:
            return
        self._next_frame_s = wall_s + self.frame_s
        if self.faults.stalled((self.clock.now_ns() - self.clock.t0_ns) * 1e-9) or self.silent:
            return
        self._send_pulses(self.clock.t_generated_ns)

    def _start(self, args: list[str]) -> None:
        self._t_start = self.clock.t_generated_ns
        self._watermark = self._t_start
        self._counter = 0
        self._queue.clear()
        self.running = True
        self._next_frame_s = 0.0
        if self.starts is not None:
            self.starts.append(self._t_start)
        log.info("%s: START at %d ns", self.name, self._t_start)
        self.reply(f"OK {self._t_start}")

    def _stop_idle(self, args: list[str]) -> None:
        self.reply("ERR not running")

    def _stop(self) -> None:
        t_stop = self.clock.t_generated_ns
        self._send_pulses(t_stop)
        self._send_frame(FRAME_END, t_stop, 0, np.zeros(0, dtype=PULSE_DTYPE))
        log.info("%s: STOP at %d ns after %d frames", self.name, t_stop, self._counter)
        self._idle()

    def _idle(self) -> None:
        self.running = False
        self._queue.clear()
        self._triggers = [np.concatenate(self._triggers)[-1:]]

    def _send_pulses(self, watermark_ns: int) -> None:
        """DATA frames with every queued pulse (split at MAX_RECORDS), up to watermark_ns."""
        pulses = np.concatenate(self._queue) if self._queue else np.zeros(0, dtype=PULSE_DTYPE)
        self._queue.clear()
        triggers = np.concatenate(self._triggers)
        starts = range(0, max(len(pulses), 1), MAX_RECORDS)
        for i in starts:
            chunk = pulses[i : i + MAX_RECORDS]
            nxt = i + MAX_RECORDS
            wm = int(pulses["t_ns"][nxt]) if nxt < len(pulses) else watermark_ns
            dead = dead_time_ns(triggers, self.dead_ns, self._watermark, wm)
            self._send_frame(FRAME_DATA, wm, dead, chunk)
        self._triggers = [triggers[-1:]]

    def _send_frame(self, kind: int, watermark_ns: int, dead_ns: int, pulses: np.ndarray) -> None:
        frame = encode_frame(kind, self._counter, watermark_ns, dead_ns, pulses)
        dt_s = (watermark_ns - self._watermark) * 1e-9
        sent = SentFrame(kind, self._counter, watermark_ns, dead_ns, pulses, self._t_start)
        self._counter += 1
        self._watermark = watermark_ns
        if self.line.pending_out > OUTPUT_LIMIT_BYTES:
            self.faults.counts.overflow_frames += 1
            data = b""
        elif kind == FRAME_END and self.faults.end_frame_lost():
            log.info("%s: injected loss of the END frame", self.name)
            data = b""
        else:
            data = self.faults.apply(frame, dt_s)
            if self.line_hook is not None:
                data = self.line_hook(sent, data)
        if self.frames is None:
            if data:
                self._write(data)
            return
        if data and self._write(data):
            sent.line_end = self._line_pos
            sent.damaged = frame not in data
        else:
            sent.lost = True
        self.frames.append(sent)


class SlowControlDevice(TextDevice):
    """The slow-control box: reactor power, HPGe bias, LN2 level, temperature (text only)."""

    model = SLOWCONTROL_MODEL

    def __init__(self, sim: Sim, clock: Clock, line: Line, seed: int, record: bool = False) -> None:
        super().__init__("slowcontrol", clock, line, record)
        self.schedule = sorted(sim.reactor, key=lambda p: p.start_s) or [
            ReactorPeriod(start_s=0, power_MW=0.0)
        ]
        self.rng = np.random.default_rng([seed, 99])
        self.override_MW: float | None = None
        """The true power set by ``CONF POWER`` (replaces the schedule); None: the schedule."""
        self.readings: list[ReadingRecord] | None = [] if record else None
        self.settings = {"HV": sim.hv_V}
        self._parsers = {"POWER": self._set_power, "HV": _bounded(float, 0.0, 10_000.0)}

    def _set_power(self, text: str) -> float:
        value = _bounded(float, 0.0, 10_000.0)(text)
        self.override_MW = value
        return value

    def set_power(self, power_MW: float) -> None:
        """The true reactor power from now on, as ``CONF POWER`` sets it, without a host on
        the line: a trip or restart at the plant (tests; through SimCrate.call)."""
        self.settings["POWER"] = self._set_power(str(power_MW))

    def _sim_s(self, t_ns: int) -> float:
        return (t_ns - self.clock.t0_ns) * 1e-9

    def power_MW(self, t_ns: int) -> float:
        """The true reactor thermal power (MW) at t_ns: schedule or CONF POWER override."""
        if self.override_MW is not None:
            return self.override_MW
        s = self._sim_s(t_ns)
        power = self.schedule[0].power_MW
        for period in self.schedule:
            if period.start_s <= s:
                power = period.power_MW
        return power

    def ln2_pct(self, t_ns: int) -> float:
        """LN2 dewar level (%): a sawtooth falling from LN2_FULL_PCT, refilled at the low mark."""
        days = self._sim_s(t_ns) / 86400.0
        span = LN2_FULL_PCT - LN2_REFILL_PCT
        return LN2_FULL_PCT - (days * LN2_FALL_PCT_PER_DAY) % span

    def _extra_commands(self) -> dict[str, Callable[[list[str]], None]]:
        return {"READ?": self._read}

    def _read(self, args: list[str]) -> None:
        t = self.clock.now_ns()
        noise = self.rng.standard_normal(3)
        true_power, true_hv, ln2 = self.power_MW(t), self.settings["HV"], self.ln2_pct(t)
        power = true_power * (1.0 + POWER_NOISE * noise[0])
        hv = true_hv + HV_NOISE_V * noise[1] if true_hv > 0 else 0.0
        temp = TEMP_C + TEMP_NOISE_C * noise[2]
        values = f"power_MW={power:.3f} hv_V={hv:.2f} ln2_pct={ln2:.2f} temp_C={temp:.2f}"
        text = f"OK t_ns={t} {values}"
        if self.readings is not None:
            self.readings.append(ReadingRecord(t, true_power, true_hv, ln2, TEMP_C, text))
        self.reply(text)
