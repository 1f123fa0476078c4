"""ZeroMQ message layout of the data path: a header frame and a raw numpy buffer frame.

Every data message is a two-part ZeroMQ message ``[header, payload]``; the payload is the
pulse array's buffer (``PULSE_DTYPE`` records), sent with ``copy=False`` and received with
``np.frombuffer``: no pickling, no per-pulse work. Header, little-endian (56 bytes)::

    offset size field
    0      2    magic b"NQ"
    2      1    version (2)
    3      1    kind: 1 DATA, 2 BOR (begin of run), 3 EOR (end of run), plus the flags a
                live builder sets before recording a batch, for what a replay cannot see
                again: a refusal (REFUSALS), or a restart of the builder (RESUMED)
    4      1    stream id (daq.core.records.Stream)
    5      1    gap: why the stream lost time before this batch (daq.core.records.Loss;
                0 = nothing lost)
    6      2    reserved (0)
    8      4    run number
    12     4    n: number of pulse records in the payload
    16     8    seq: per-stream sequence number: the sender's incarnation (0, then +1 at
                every restart of the sending process within the run) times 2^48 plus
                its message number (0 for its BOR message, +1 per message)
    24     8    watermark (ns): the stream is complete for t_ns < watermark
                (BOR: the front-end's start time; EOR: its stop time)
    32     8    dead time (ns) of this stream since the previous message
    40     4    pulses dropped by the readout since the previous message (buffer overflow)
    44     4    frames lost by the readout since the previous message (CRC, gaps, noise)
    48     8    covered from (ns): with a gap, the stream covers [covered_from, watermark)
                completely and [previous watermark, covered_from) not at all; the
                batch's pulses may lie in either part (ignored when gap = 0)

A DATA message with n = 0 is a heartbeat: it only advances the watermark.

A restarted sender rejoins a run as a new incarnation: its BOR (message number 0) carries the
device's new start time, and everything its previous incarnation sent after what the builder
applied is lost (daq.build.eventbuilder: a RESTART gap).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from daq.core.errors import WireError
from daq.core.records import PULSE_DTYPE, Loss, Stream

MAGIC = b"NQ"
VERSION = 2
KIND_DATA = 1
KIND_BOR = 2
KIND_EOR = 3
KIND_NAMES = {KIND_DATA: "data", KIND_BOR: "bor", KIND_EOR: "eor"}
KIND_MASK = 0x0F
"""The kind proper; the bits above are refusal flags."""
REFUSED_AHEAD_OF_CLOCK = 0x80
REFUSED_UNANNOUNCED_RESTART = 0x40
REFUSALS = {
    REFUSED_AHEAD_OF_CLOCK: "a watermark ahead of the DAQ clock (builder.max_clock_lead_s)",
    REFUSED_UNANNOUNCED_RESTART: "an incarnation run control did not announce",
}
"""Refusal flags of the kind byte and why a live builder sets them: checks against the wall
clock and run control that only the live builder can make. The batch is recorded with its
flag, so the event builder refuses it in a replay exactly as it did live."""
RESUMED = 0x20
"""Flag of the first batch of its stream that a restarted builder received: what its sender
sent before and the builder did not record died with the old builder (a sequence gap to
declare at once, not to wait for). Recorded with the batch, so a replay does the same."""
KIND_FLAGS = RESUMED | sum(REFUSALS)
INCARNATION_SHIFT = 48
"""seq = incarnation << INCARNATION_SHIFT | message number."""
HEADER = struct.Struct("<2sBBBBHIIQqqIIq")
assert HEADER.size == 56


@dataclass(slots=True)
class Batch:
    """One data-path message: header fields and the pulses it carries."""

    kind: int
    stream: int
    run: int
    seq: int
    watermark_ns: int
    pulses: np.ndarray
    dead_ns: int = 0
    dropped: int = 0
    lost_frames: int = 0
    gap: int = 0
    covered_from_ns: int = 0

    @property
    def base_kind(self) -> int:
        """DATA, BOR or EOR, without refusal flags."""
        return self.kind & KIND_MASK

    @property
    def refusal(self) -> str:
        """Why a live builder refused this batch ("" if it did not)."""
        return "; ".join(why for flag, why in REFUSALS.items() if self.kind & flag)

    @property
    def resumed(self) -> bool:
        """The first batch of its stream after a builder restart (see RESUMED)?"""
        return bool(self.kind & RESUMED)

    @property
    def incarnation(self) -> int:
        """Which restart of its sender within the run sent it (0: the first process)."""
        return self.seq >> INCARNATION_SHIFT

    @property
    def number(self) -> int:
        """Its message number within its incarnation (0: the incarnation's BOR)."""
        return self.seq & ((1 << INCARNATION_SHIFT) - 1)

    def header(self) -> bytes:
        """The packed header frame."""
        return HEADER.pack(
            MAGIC,
            VERSION,
            self.kind,
            self.stream,
            self.gap,
            0,
            self.run,
            len(self.pulses),
            self.seq,
            self.watermark_ns,
            self.dead_ns,
            self.dropped,
            self.lost_frames,
            self.covered_from_ns,
        )

    def frames(self) -> list:
        """The two ZeroMQ frames: header and the pulses' buffer (zero-copy)."""
        return [self.header(), memoryview(np.ascontiguousarray(self.pulses, PULSE_DTYPE))]


def send_batch(socket, batch: Batch, flags: int = 0) -> None:
    """Send a batch on a ZeroMQ socket (zero-copy payload)."""
    socket.send_multipart(batch.frames(), flags=flags, copy=False)


def decode(parts: list) -> Batch:
    """Batch from received ZeroMQ frames; raises WireError naming what is malformed."""
    if len(parts) != 2:
        raise WireError(f"expected 2 message parts (header, payload), got {len(parts)}")
    header, payload = (memoryview(p.buffer if hasattr(p, "buffer") else p) for p in parts)
    if header.nbytes != HEADER.size:
        raise WireError(f"header is {header.nbytes} bytes, expected {HEADER.size}")
    (
        magic,
        version,
        kind,
        stream,
        gap,
        reserved,
        run,
        n,
        seq,
        watermark,
        dead,
        dropped,
        lost,
        covered,
    ) = HEADER.unpack(header)
    if magic != MAGIC:
        raise WireError(f"bad magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise WireError(f"unsupported wire version {version}")
    if reserved:
        raise WireError(f"reserved header bytes are {reserved:#06x}, not 0")
    if kind & KIND_MASK not in KIND_NAMES or kind & ~KIND_MASK & ~KIND_FLAGS:
        raise WireError(f"unknown message kind {kind}")
    if stream not in Stream._value2member_map_:
        raise WireError(f"unknown stream id {stream}")
    if gap not in Loss._value2member_map_:
        raise WireError(f"unknown gap reason {gap}")
    if payload.nbytes != n * PULSE_DTYPE.itemsize:
        raise WireError(
            f"stream {Stream(stream).name.lower()} seq {seq}: payload is {payload.nbytes} bytes,"
            f" header says {n} records of {PULSE_DTYPE.itemsize}"
        )
    pulses = np.frombuffer(payload, dtype=PULSE_DTYPE)
    return Batch(kind, stream, run, seq, watermark, pulses, dead, dropped, lost, gap, covered)
