"""The wire-batch header records of raw pulses files, per format version, in one place.

A pulses block (daq.formats.rawfile) stores one header record per wire batch and a crc32 over
each batch's *packed wire header* followed by its pulses. The wire header grew with the wire
protocol (daq.formats.wire), so both depend on the file's format version:

========  ==============================================  =====================================
format    header record fields (little-endian 64 bit)     packed header under the crc32
========  ==============================================  =====================================
1, 2      kind, stream, run, seq, watermark_ns, dead_ns,  wire version 1: 48 bytes, no gap
          dropped, lost_frames (, n)
3         the same, then gap, covered_from_ns (, n)       wire version 2: 56 bytes
========  ==============================================  =====================================

The reader (daq.formats.rawfile) and the fast index scan (daq.formats.rawindex) both take the
layout from here, so the two can never disagree.
"""

from __future__ import annotations

import struct

import numpy as np

from daq.formats.wire import HEADER, MAGIC, VERSION, Batch

FIELDS = ("kind", "stream", "run", "seq", "watermark_ns", "dead_ns", "dropped", "lost_frames")
"""The header fields every format version records."""
COVERAGE_FIELDS = ("gap", "covered_from_ns")
"""The fields format 3 adds: a batch's coverage (daq.formats.wire)."""
_SIGNED = ("watermark_ns", "dead_ns", "covered_from_ns")
_HEADER_V1 = struct.Struct("<2sBBB3xIIQqqII")
"""The 48-byte wire header of wire version 1 (raw formats 1 and 2)."""
COVERAGE_FORMAT = 3
"""The first raw format whose batches carry their coverage."""


def batch_keys(version: int) -> tuple[str, ...]:
    """The header fields recorded per wire batch in a file of this format version."""
    return FIELDS + COVERAGE_FIELDS if version >= COVERAGE_FORMAT else FIELDS


def block_dtype(version: int) -> np.dtype:
    """One wire batch's header record in a pulses block (the ``batches`` custom metadata)."""
    keys = (*batch_keys(version), "n")
    return np.dtype([(key, "<i8" if key in _SIGNED else "<u8") for key in keys])


def wire_version(version: int) -> int:
    """The wire protocol version whose packed headers a file of this format checksums."""
    return VERSION if version >= COVERAGE_FORMAT else 1


def packed_header(batch: Batch, version: int) -> bytes:
    """The packed wire header of a batch as a file of this format checksums it."""
    if version >= COVERAGE_FORMAT:
        return batch.header()
    return _HEADER_V1.pack(
        MAGIC,
        1,
        batch.kind,
        batch.stream,
        batch.run,
        len(batch.pulses),
        batch.seq,
        batch.watermark_ns,
        batch.dead_ns,
        batch.dropped,
        batch.lost_frames,
    )


assert HEADER.size == _HEADER_V1.size + 8, "wire version 2 adds covered_from_ns to version 1"
