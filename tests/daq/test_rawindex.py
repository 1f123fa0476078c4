"""The raw-file index's own checksum of a wire header is the packed wire header's checksum, in
every raw format (daq.formats.rawblock)."""

from __future__ import annotations

import zlib

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from daq.core.records import PULSE_DTYPE
from daq.formats.rawblock import COVERAGE_FORMAT, packed_header
from daq.formats.rawindex import _CRC, _NF, INDEX_DTYPE, _crc_rows, _wire_prefix
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
    gap=st.integers(0, 7),
    covered=st.integers(-(2**63), 2**63 - 1),
    version=st.sampled_from([2, COVERAGE_FORMAT]),
)
def test_header_checksum_matches_the_packed_wire_header(
    kind, stream, run, seq, watermark, dead, dropped, lost, gap, covered, version
):
    if version < COVERAGE_FORMAT:
        gap = covered = 0  # not recorded before format 3
    pulses = np.zeros(0, PULSE_DTYPE)
    batch = Batch(kind, stream, run, seq, watermark, pulses, dead, dropped, lost, gap, covered)
    row = np.zeros(1, INDEX_DTYPE)
    for name, value in dict(
        kind=kind, stream=stream, run=run, seq=seq, watermark_ns=watermark, dead_ns=dead
    ).items():
        row[name] = value
    row["dropped"], row["lost_frames"] = dropped, lost
    row["gap"], row["covered_from_ns"] = gap, covered
    rows = row.view(np.int64).reshape(1, _NF)
    empty = np.zeros(8, np.uint8)
    views = (empty.view("<u8"), empty.view("<u4"), empty.view("<u2"))
    crc = _crc_rows(empty, *views, rows, 0, 1, _CRC, _wire_prefix(version), version >= 3)
    assert crc == zlib.crc32(packed_header(batch, version))
