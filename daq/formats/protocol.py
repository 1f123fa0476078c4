"""The serial front-end protocol: text commands and binary list-mode frames (pure, no I/O).

Every front-end (HPGe ADC, AC digitizer, CRV digitizer) and the slow-control device speak
it, on a real port, a serial-over-Ethernet server (``socket://``) or a pty.

Text mode (idle)
    The host sends one ASCII command per line (``\\n`` terminated); the device answers one
    line, ``OK[ <values>]`` or ``ERR <reason>``.

    ==========================  ==================================================
    ``*IDN?``                   ``OK NUDAQ,<model>,<serial>,<firmware>``
    ``CONF?``                   ``OK KEY=VALUE KEY=VALUE ...``
    ``CONF <KEY> <VALUE>``      set one setting (``THR`` threshold in ADC counts,
                                ``GAIN``, ``RTRATE`` random-trigger rate in Hz on
                                the ADC, ``FRAME_MS`` longest frame interval, ...)
    ``CLOCK?``                  ``OK <t_ns>``: the common clock now
    ``READ?``                   slow control only: ``OK t_ns=... power_MW=... ...``
    ``START``                   ``OK <t_start_ns>``, then the device streams frames
    ==========================  ==================================================

Binary mode (running)
    After ``START`` the device sends list-mode frames until the host sends ``STOP``;
    the device then ends with an ``END`` frame and returns to text mode. Frames are sent
    at least every ``FRAME_MS`` even without pulses (heartbeats: they advance the
    watermark). Layout, little-endian::

        offset  size  field
        0       4     sync word A5 5A C3 3C
        4       1     frame type: 1 DATA, 2 END
        5       1     reserved (0)
        6       2     n: number of pulse records (<= MAX_RECORDS)
        8       4     frame counter, 0 for the first frame after START, +1 per frame
        12      8     watermark (ns): every pulse with t_ns < watermark has been sent
        20      4     dead time (ns) of the front-end during this frame's interval
        24      16*n  pulse records (daq.core.records.PULSE_DTYPE)
        24+16n  4     CRC-32 (zlib) of bytes 4 .. 24+16n

    A reader finds frames by the sync word, checks the CRC, and on any mismatch skips
    forward to the next sync word; gaps in the frame counter count missing frames.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from daq.core.errors import ProtocolError
from daq.core.records import PULSE_DTYPE

SYNC = b"\xa5\x5a\xc3\x3c"
HEADER = struct.Struct("<4sBBHIqI")
HEADER_SIZE = HEADER.size
CRC = struct.Struct("<I")
MAX_RECORDS = 4096
FRAME_DATA = 1
FRAME_END = 2
_FRAME_TYPES = (FRAME_DATA, FRAME_END)

assert HEADER_SIZE == 24


@dataclass(slots=True)
class Frame:
    """One decoded list-mode frame."""

    kind: int
    counter: int
    watermark_ns: int
    dead_ns: int
    pulses: np.ndarray
    missing_before: int = 0
    """Frames lost just before this one (its frame-counter gap): the time since the last good
    frame's watermark is not covered."""


def encode_frame(
    kind: int, counter: int, watermark_ns: int, dead_ns: int, pulses: np.ndarray
) -> bytes:
    """Bytes of one frame carrying ``pulses`` (PULSE_DTYPE, at most MAX_RECORDS)."""
    if len(pulses) > MAX_RECORDS:
        raise ProtocolError(f"frame of {len(pulses)} pulses exceeds MAX_RECORDS={MAX_RECORDS}")
    body = (
        HEADER.pack(
            SYNC, kind, 0, len(pulses), counter & 0xFFFFFFFF, watermark_ns, dead_ns & 0xFFFFFFFF
        )
        + np.ascontiguousarray(pulses, dtype=PULSE_DTYPE).tobytes()
    )
    return body + CRC.pack(zlib.crc32(memoryview(body)[4:]))


def frame_size(n_records: int) -> int:
    """Size in bytes of a frame with n records."""
    return HEADER_SIZE + n_records * PULSE_DTYPE.itemsize + CRC.size


@dataclass(slots=True)
class DecoderStats:
    """What a decoder has seen: good frames and everything it had to throw away."""

    frames: int = 0
    pulses: int = 0
    crc_errors: int = 0
    bad_headers: int = 0
    skipped_bytes: int = 0
    missing_frames: int = 0


@dataclass
class FrameDecoder:
    """Incremental decoder of a byte stream into frames, resynchronising after damage.

    ``feed`` takes whatever bytes arrived and returns the complete good frames; bytes that
    belong to no good frame are counted in ``stats.skipped_bytes``, frames that failed their
    CRC or header checks in ``stats.crc_errors`` / ``stats.bad_headers``, and counter gaps
    between good frames in ``stats.missing_frames``.
    """

    stats: DecoderStats = field(default_factory=DecoderStats)
    _buf: bytearray = field(default_factory=bytearray)
    _next_counter: int = 0

    def feed(self, data: bytes) -> list[Frame]:
        """Append received bytes; return every complete good frame now decodable."""
        self._buf += data
        frames: list[Frame] = []
        buf = self._buf
        pos = 0
        while True:
            start = buf.find(SYNC, pos)
            if start < 0:
                keep = max(pos, len(buf) - (len(SYNC) - 1))
                self.stats.skipped_bytes += keep - pos
                pos = keep
                break
            self.stats.skipped_bytes += start - pos
            pos = start
            if len(buf) - pos < HEADER_SIZE:
                break
            _, kind, reserved, n, counter, watermark, dead = HEADER.unpack_from(buf, pos)
            if kind not in _FRAME_TYPES or reserved != 0 or n > MAX_RECORDS:
                self.stats.bad_headers += 1
                self.stats.skipped_bytes += 1
                pos += 1
                continue
            end = pos + frame_size(n)
            if len(buf) < end:
                break
            (crc,) = CRC.unpack_from(buf, end - CRC.size)
            if zlib.crc32(memoryview(buf)[pos + 4 : end - CRC.size]) != crc:
                self.stats.crc_errors += 1
                self.stats.skipped_bytes += 1
                pos += 1
                continue
            payload = bytes(buf[pos + HEADER_SIZE : end - CRC.size])
            pulses = np.frombuffer(payload, dtype=PULSE_DTYPE)
            frames.append(Frame(kind, counter, watermark, dead, pulses, self._count(counter, n)))
            pos = end
        del buf[:pos]
        return frames

    def abandon_partial(self) -> None:
        """Give up on an incomplete candidate frame (called when the line went quiet).

        A corrupted length field can make the decoder wait for bytes that never come;
        skipping past the candidate's sync word lets later frames through.
        """
        if self._buf.startswith(SYNC):
            self.stats.bad_headers += 1
            self.stats.skipped_bytes += 1
            del self._buf[:1]

    @property
    def pending_bytes(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buf)

    def _count(self, counter: int, n: int) -> int:
        """Count a good frame; the frames missing before it."""
        missing = (counter - self._next_counter) & 0xFFFFFFFF
        self.stats.missing_frames += missing
        self._next_counter = (counter + 1) & 0xFFFFFFFF
        self.stats.frames += 1
        self.stats.pulses += n
        return missing


def format_command(command: str, *args: object) -> bytes:
    """One text command line."""
    return (" ".join([command, *map(str, args)]) + "\n").encode("ascii")


def parse_reply(line: bytes) -> list[str]:
    """Values of an ``OK`` reply; raises ProtocolError for ``ERR`` or anything else."""
    text = line.decode("ascii", errors="replace").strip()
    if text == "OK" or text.startswith("OK "):
        return text[3:].split()
    if text.startswith("ERR"):
        raise ProtocolError(f"device refused: {text[4:] or 'no reason given'}")
    raise ProtocolError(f"unexpected reply {text!r}")


def parse_keyvalues(values: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` tokens of a reply as a dict."""
    out = {}
    for token in values:
        key, sep, value = token.partition("=")
        if not sep:
            raise ProtocolError(f"expected KEY=VALUE, got {token!r}")
        out[key] = value
    return out
