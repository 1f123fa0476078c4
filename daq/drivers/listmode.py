"""Driver of a list-mode front-end (HPGe ADC, AC or CRV digitizer): text commands, then frames.

In idle the driver speaks text (daq.drivers.SerialDevice); ``start`` switches the line to
binary list-mode frames, which ``read_frames`` feeds through daq.formats.protocol.FrameDecoder, and
``stop`` ends with the device's END frame. Damaged, lost or garbage bytes never stop the
reading: the decoder resynchronises on the next sync word and counts every bad frame in
``stats``. No physics here: pulses pass through untouched.
"""

from __future__ import annotations

import select
import time

import serial

from daq.core.errors import ProtocolError
from daq.drivers.serial_device import SerialDevice
from daq.formats.protocol import FRAME_END, DecoderStats, Frame, FrameDecoder, format_command

READ_CHUNK_BYTES = 1 << 20
"""Most bytes taken from the line per read (a few frames' worth at full rate)."""
QUIET_S = 0.2
"""A line silent this long (s) is quiet: a frame still incomplete then will never complete."""


class EndFrameLost(ProtocolError):
    """STOP was not answered by a readable END frame; ``frames`` are the data that did arrive."""

    def __init__(self, message: str, frames: list[Frame]) -> None:
        super().__init__(message)
        self.frames = frames


class FrontendDriver(SerialDevice):
    """One front-end on a pyserial URL (``/dev/tty*``, ``socket://host:port``, a pty)."""

    def __init__(self, url: str, baudrate: int = 921600, timeout_s: float = 5.0) -> None:
        super().__init__(url, baudrate, timeout_s)
        self.decoder = FrameDecoder()
        self.running = False
        self.lost_end_frames = 0
        self.last_rx = time.monotonic()

    @property
    def stats(self) -> DecoderStats:
        """Good, bad, missing frames and skipped bytes since the driver was made."""
        return self.decoder.stats

    def command(self, command: str, *args: object) -> list[str]:
        if self.running:
            raise ProtocolError(f"{self.url}: {command}: device is running (STOP it first)")
        return super().command(command, *args)

    def configure(self, **settings: object) -> None:
        """``CONF KEY VALUE`` for each setting (``THR``, ``GAIN``, ``RTRATE``, ``FRAME_MS``...)."""
        for key, value in settings.items():
            self.command("CONF", key.upper(), value)

    def settings(self) -> dict[str, int | float | str]:
        """The device's current settings (``CONF?``), numbers converted."""
        return {key: _number(value) for key, value in self.query_keyvalues("CONF?").items()}

    def clock(self) -> int:
        """The common clock now (ns)."""
        return self.query_int("CLOCK?")

    def start(self) -> int:
        """Start list-mode streaming; returns the device's start time t_start (ns).

        A fresh decoder (same statistics) expects frame counter 0 and holds no bytes of a
        previous run.
        """
        self.decoder = FrameDecoder(stats=self.decoder.stats)
        t_start = self.query_int("START")
        self.port.timeout = 0  # binary mode: reads take what is there, select() does the waiting
        self.running = True
        self.last_rx = time.monotonic()
        return t_start

    def read_frames(self, max_wait_s: float) -> list[Frame]:
        """Good frames decodable from what arrived within max_wait_s (s); [] if nothing did.

        When the line has been quiet for QUIET_S while bytes are pending, the pending
        candidate frame is abandoned (a corrupted length field would otherwise hold back
        every later frame, the END frame included).
        """
        data = self._read_available(max_wait_s)
        if data:
            self.last_rx = time.monotonic()
            return self.decoder.feed(data)
        frames: list[Frame] = []
        if time.monotonic() - self.last_rx >= QUIET_S:
            while self.decoder.pending_bytes:
                before = self.decoder.pending_bytes
                self.decoder.abandon_partial()
                frames += self.decoder.feed(b"")
                if self.decoder.pending_bytes == before:
                    break
        return frames

    def stop(self) -> tuple[list[Frame], Frame]:
        """Send STOP and read until the END frame: (remaining data frames, END frame).

        Raises EndFrameLost (carrying the data frames that arrived) when no good END frame
        comes within timeout_s; the device is back in text mode either way.
        """
        frames: list[Frame] = []
        deadline = time.monotonic() + self.timeout_s
        why = f"no good END frame within {self.timeout_s:g} s"
        try:
            self._write(format_command("STOP"))
            while time.monotonic() < deadline:
                for frame in self.read_frames(0.05):
                    if frame.kind == FRAME_END:
                        return frames, frame
                    frames.append(frame)
        except ProtocolError as err:
            why = str(err).removeprefix(f"{self.url}: ")
        finally:
            self._idle()
        self.lost_end_frames += 1
        raise EndFrameLost(f"{self.url}: STOP: {why}", frames)

    def reconnect(self) -> None:
        """Open the line again; the device is assumed idle (text mode) afterwards."""
        self.running = False
        super().reconnect()

    def _idle(self) -> None:
        """Back to text mode: replies are waited for up to timeout_s again."""
        self.running = False
        try:
            self.port.timeout = self.timeout_s
        except (serial.SerialException, OSError):
            pass  # a lost line: the next command reports it

    def _write(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except (serial.SerialException, OSError) as err:
            raise ProtocolError(f"{self.url}: write failed: {err}") from None

    def _read_available(self, max_wait_s: float) -> bytes:
        """Whatever bytes arrived (waiting up to max_wait_s for the first), without blocking."""
        try:
            ready, _, _ = select.select([self.port.fileno()], [], [], max(max_wait_s, 0.0))
            if not ready:
                return b""
            return self.port.read(READ_CHUNK_BYTES)  # end of stream raises SerialException
        except (serial.SerialException, OSError) as err:
            raise ProtocolError(f"{self.url}: line lost while running: {err}") from None


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
