"""The raw-file index's own checksum of a wire header is the wire header's checksum."""

from __future__ import annotations

import zlib

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from daq.core.records import PULSE_DTYPE
from daq.formats.rawindex import _CRC, _NF, _WIRE_PREFIX, INDEX_DTYPE, _crc_rows
from daq.formats.wire import Batch


@settings(deadline=None)  # the first call loads the numba kernel
@given(
    kind=st.integers(1, 3),
    stream=st.integers(0, 3),
    run=st.integers(0, 2**32 - 1),
    seq=st.integers(0, 2**63 - 1),
    watermark=st.integers(-(2**63), 2**63 - 1),
    dead=st.integers(-(2**63), 2**63 - 1),
    dropped=st.integers(0, 2**32 - 1),
    lost=st.integers(0, 2**32 - 1),
)
def test_header_checksum_matches_the_packed_wire_header(
    kind, stream, run, seq, watermark, dead, dropped, lost
):
    batch = Batch(kind, stream, run, seq, watermark, np.zeros(0, PULSE_DTYPE), dead, dropped, lost)
    row = np.zeros(1, INDEX_DTYPE)
    for name, value in dict(
        kind=kind, stream=stream, run=run, seq=seq, watermark_ns=watermark, dead_ns=dead
    ).items():
        row[name] = value
    row["dropped"], row["lost_frames"] = dropped, lost
    rows = row.view(np.int64).reshape(1, _NF)
    empty = np.zeros(8, np.uint8)
    views = (empty.view("<u8"), empty.view("<u4"), empty.view("<u2"))
    assert _crc_rows(empty, *views, rows, 0, 1, _CRC, _WIRE_PREFIX) == zlib.crc32(batch.header())
