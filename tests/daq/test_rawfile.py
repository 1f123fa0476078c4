"""Raw run files: round trip, crash and corruption recovery, foreign files."""

from __future__ import annotations

import hashlib
import zlib

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daq.core.errors import RawFileError
from daq.core.records import EVENT_DTYPE, PULSE_DTYPE, Stream
from daq.formats.rawblock import batch_keys, packed_header
from daq.formats.rawfile import SCHEMAS, RawReader, RawWriter, raw_path
from daq.formats.wire import KIND_BOR, KIND_DATA, KIND_EOR, Batch

CONFIG = '{"spectrum": {"bin_width_keV": 0.2}}'


def make_batch(rng: np.random.Generator, stream: int, seq: int, n: int, kind=KIND_DATA) -> Batch:
    pulses = np.zeros(n, PULSE_DTYPE)
    pulses["t_ns"] = np.sort(rng.integers(0, 2**40, n))
    pulses["adc"] = rng.integers(0, 2**32, n, dtype=np.uint32)
    pulses["channel"] = rng.integers(0, 2**16, n, dtype=np.uint16)
    pulses["flags"] = rng.integers(0, 2**16, n, dtype=np.uint16)
    return Batch(kind, stream, 7, seq, 1_000_000 * seq, pulses, seq * 3, seq % 5, seq % 2)


def make_events(rng: np.random.Generator, n: int, t0: int) -> np.ndarray:
    events = np.zeros(n, EVENT_DTYPE)
    events["t_ns"] = t0 + np.arange(n) * 1000
    events["adc"] = rng.integers(0, 100_000, n)
    events["energy_keV"] = rng.uniform(0, 1000, n)
    events["tags"] = rng.integers(0, 16, n)
    return events


def assert_same_batch(a: Batch, b: Batch) -> None:
    assert (a.kind, a.stream, a.run, a.seq, a.watermark_ns) == (
        b.kind,
        b.stream,
        b.run,
        b.seq,
        b.watermark_ns,
    )
    assert (a.dead_ns, a.dropped, a.lost_frames) == (b.dead_ns, b.dropped, b.lost_frames)
    assert a.pulses.dtype == b.pulses.dtype
    assert a.pulses.tobytes() == b.pulses.tobytes()


def record_run(prefix, n_batches=60, seed=1):
    """A run of interleaved streams, BOR to EOR, with events; returns what was written."""
    rng = np.random.default_rng(seed)
    batches, events = [], []
    with RawWriter(prefix, 7, CONFIG) as writer:
        for i in range(n_batches):
            kind = KIND_BOR if i < 3 else KIND_EOR if i >= n_batches - 3 else KIND_DATA
            batch = make_batch(rng, i % 3, i // 3, int(rng.integers(0, 300)), kind)
            writer.write_batch(batch)
            batches.append(batch)
            chunk = make_events(rng, int(rng.integers(1, 50)), i * 10**6)
            writer.write_events(chunk)
            events.append(chunk)
            writer.flush()
    return batches, np.concatenate(events)


def batch_from(kind, stream, run, seq, watermark, dead, dropped, lost, n, seed) -> Batch:
    pulses = make_batch(np.random.default_rng(seed), stream, seq, n).pulses
    return Batch(kind, stream, run, seq, watermark, pulses, dead, dropped, lost)


batch_strategy = st.builds(
    batch_from,
    st.sampled_from([KIND_DATA, KIND_BOR, KIND_EOR]),
    st.sampled_from([int(s) for s in Stream]),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 400),
    st.integers(0, 2**32),
)


def message_ranges(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges of the record-batch messages of an intact Arrow stream."""
    reader = pa.BufferReader(pa.py_buffer(data))
    pa.ipc.read_message(reader)
    ranges = []
    while True:
        start = reader.tell()
        try:
            pa.ipc.read_message(reader)
        except EOFError:
            return ranges
        ranges.append((start, reader.tell()))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(batch_strategy, max_size=12))
def test_round_trip_is_identical(tmp_path_factory, batches):
    prefix = tmp_path_factory.mktemp("raw") / "run"
    with RawWriter(prefix, 7, CONFIG) as writer:
        for batch in batches:
            writer.write_batch(batch)
    reader = RawReader(raw_path(prefix, "pulses"))
    got = list(reader.iter_batches())
    assert len(got) == len(batches)
    for a, b in zip(got, batches, strict=True):
        assert_same_batch(a, b)
    assert reader.damage is None
    assert (reader.run, reader.config_json) == (7, CONFIG)


def test_events_and_file_info(tmp_path):
    prefix = tmp_path / "raw" / "run000007"
    rng = np.random.default_rng(3)
    events = make_events(rng, 1000, 5)
    writer = RawWriter(prefix, 7, CONFIG)
    writer.write_events(events[:400])
    writer.write_events(events[:0])
    writer.write_events(events[400:])
    infos = writer.close()
    assert [i.kind for i in infos] == ["pulses", "events"]
    for info in infos:
        data = info.path.read_bytes()
        assert info.bytes == len(data)
        assert info.sha256 == hashlib.sha256(data).hexdigest()
    reader = RawReader(infos[1].path)
    assert reader.read_events().tobytes() == events.tobytes()
    assert reader.damage is None
    assert list(RawReader(infos[0].path).iter_batches()) == []
    with pytest.raises(RawFileError, match="holds events"):
        next(reader.iter_batches())
    with pytest.raises(RawFileError, match="never overwritten"):
        RawWriter(prefix, 7, CONFIG)


def test_standard_tools_read_the_files(tmp_path):
    batches, events = record_run(tmp_path / "run")
    stream = pa.ipc.open_stream(raw_path(tmp_path / "run", "pulses"))
    assert stream.schema.metadata[b"nudaq.run"] == b"7"
    first, meta = stream.read_next_batch_with_custom_metadata()
    headers = np.frombuffer(bytes.fromhex(meta[b"batches"].decode()), "<i8").reshape(-1, 11)
    assert headers[0, 3] == batches[0].seq and headers[0, 10] == len(batches[0].pulses)
    assert first.column("t_ns").to_numpy().tolist() == batches[0].pulses["t_ns"].tolist()
    frame = pa.ipc.open_stream(raw_path(tmp_path / "run", "events")).read_pandas()
    assert frame["energy_keV"].to_numpy().tolist() == events["energy_keV"].tolist()


def test_batches_between_flushes_form_one_block(tmp_path):
    prefix = tmp_path / "run"
    rng = np.random.default_rng(9)
    blocks = [
        [make_batch(rng, i % 3, i, int(rng.integers(0, 50))) for i in range(k)] for k in (5, 1, 7)
    ]
    with RawWriter(prefix, 7, CONFIG) as writer:
        for block in blocks:
            for batch in block:
                writer.write_batch(batch)
            writer.flush()
        writer.flush()  # nothing received since: no empty block
    path = raw_path(prefix, "pulses")
    table = pa.ipc.open_stream(path).read_all()
    assert [b.num_rows for b in table.to_batches()] == [
        sum(len(b.pulses) for b in k) for k in blocks
    ]
    got = list(RawReader(path).iter_batches())
    assert len(got) == sum(map(len, blocks))
    for a, b in zip(got, [b for k in blocks for b in k], strict=True):
        assert_same_batch(a, b)


def test_corrupted_block_loses_only_its_batches(tmp_path):
    prefix = tmp_path / "run"
    rng = np.random.default_rng(17)
    blocks = [[make_batch(rng, i % 3, 10 * k + i, 40) for i in range(6)] for k in range(3)]
    with RawWriter(prefix, 7, CONFIG) as writer:
        for block in blocks:
            for batch in block:
                writer.write_batch(batch)
            writer.flush()
    path = raw_path(prefix, "pulses")
    original = path.read_bytes()
    (start, end) = message_ranges(original)[1]
    data = bytearray(original)
    data[(start + end) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    reader = RawReader(path)
    got = list(reader.iter_batches())
    for a, b in zip(got, blocks[0] + blocks[2], strict=True):
        assert_same_batch(a, b)
    region = reader.damage.regions[0]
    assert (region.offset, region.bytes_skipped) == (start, end - start)
    assert region.last_good_ns == blocks[0][-1].watermark_ns
    assert region.resumed_ns == blocks[2][0].watermark_ns


def write_format_1(path, batches: list[Batch]) -> None:
    """A pulses file as format version 1 wrote it: one record batch per wire batch."""
    meta = {"nudaq.format": "nudaq-pulses", "nudaq.format_version": "1", "nudaq.run": "7"}
    meta |= {"nudaq.config": CONFIG, "nudaq.version": "0"}
    with pa.ipc.new_stream(path, SCHEMAS["pulses"].with_metadata(meta)) as writer:
        for batch in batches:
            custom = {key: str(getattr(batch, key)) for key in batch_keys(1)}
            custom["crc32"] = str(zlib.crc32(batch.pulses, zlib.crc32(packed_header(batch, 1))))
            columns = [pa.array(batch.pulses[name]) for name in SCHEMAS["pulses"].names]
            record = pa.record_batch(columns, schema=SCHEMAS["pulses"])
            writer.write_batch(record, custom_metadata=custom)


def test_format_version_1_is_read(tmp_path):
    rng = np.random.default_rng(13)
    written = [make_batch(rng, i % 3, i, int(rng.integers(0, 50))) for i in range(6)]
    path = tmp_path / "old.pulses.arrow"
    write_format_1(path, written)
    reader = RawReader(path)
    for a, b in zip(reader.iter_batches(), written, strict=True):
        assert_same_batch(a, b)
    assert reader.damage is None


def test_flushed_data_survive_without_close(tmp_path):
    prefix = tmp_path / "run"
    rng = np.random.default_rng(5)
    writer = RawWriter(prefix, 7, CONFIG)
    written = [make_batch(rng, 0, i, 100) for i in range(10)]
    for batch in written:
        writer.write_batch(batch)
    writer.flush()
    reader = RawReader(raw_path(prefix, "pulses"))
    got = list(reader.iter_batches())
    assert len(got) == 10
    assert_same_batch(got[-1], written[-1])
    assert reader.damage.bytes_skipped == 0
    assert "not closed" in reader.damage.regions[0].reason
    writer.close()


@pytest.mark.parametrize("cut_fraction", [0.31, 0.5, 0.77, 0.999])
def test_truncated_file_recovers_everything_before(tmp_path, cut_fraction):
    batches, _ = record_run(tmp_path / "run")
    path = raw_path(tmp_path / "run", "pulses")
    data = path.read_bytes()
    cut = int(len(data) * cut_fraction)
    path.write_bytes(data[:cut])
    reader = RawReader(path)
    got = list(reader.iter_batches())
    assert len(got) == sum(1 for _, end in message_ranges(data) if end <= cut)
    for a, b in zip(got, batches, strict=False):
        assert_same_batch(a, b)
    damage = reader.damage
    assert damage.batches_read == len(got)
    assert len(damage.regions) == 1
    assert damage.offset + damage.bytes_skipped == cut
    assert damage.regions[0].last_good_ns == got[-1].watermark_ns
    assert damage.regions[0].resumed_ns is None


@pytest.mark.parametrize(("where", "length"), [(0.3, 4), (0.5, 200), (0.62, 3000), (0.45, 1)])
def test_corrupted_block_is_skipped_and_reading_resumes(tmp_path, where, length):
    batches, _ = record_run(tmp_path / "run", n_batches=90, seed=11)
    path = raw_path(tmp_path / "run", "pulses")
    original = path.read_bytes()
    data = bytearray(original)
    start = int(len(data) * where)
    rng = np.random.default_rng(start)
    data[start : start + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    changed = np.flatnonzero(np.frombuffer(data, np.uint8) != np.frombuffer(original, np.uint8))
    if not len(changed):
        pytest.skip("the random bytes equal the original ones")
    first, last = int(changed[0]), int(changed[-1])
    hit = [i for i, (a, b) in enumerate(message_ranges(original)) if a <= last and b > first]
    ranges = message_ranges(original)
    reader = RawReader(path)
    got = list(reader.iter_batches())
    expected = [b for i, b in enumerate(batches) if i not in hit]
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert_same_batch(a, b)
    damage = reader.damage
    assert damage.batches_read == len(got)
    assert len(damage.regions) == 1
    region = damage.regions[0]
    assert region.offset == ranges[hit[0]][0]
    assert region.offset + region.bytes_skipped == ranges[hit[-1]][1]
    assert region.last_good_ns == batches[hit[0] - 1].watermark_ns
    assert region.resumed_ns == batches[hit[-1] + 1].watermark_ns


@settings(max_examples=40, deadline=None)
@given(
    damage=st.lists(
        st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=600)), min_size=1, max_size=4
    ),
    cut=st.floats(0.05, 1.0),
)
def test_corruption_never_crashes_nor_invents_batches(recorded_run, tmp_path_factory, damage, cut):
    batches, original = recorded_run
    data = bytearray(original)
    for where, garbage in damage:
        start = int(where * (len(data) - 1))
        data[start : start + len(garbage)] = garbage[: len(data) - start]
    path = tmp_path_factory.mktemp("damaged") / "run.pulses.arrow"
    path.write_bytes(bytes(data[: max(int(cut * len(data)), 1)]))
    try:
        reader = RawReader(path)
    except RawFileError:
        return  # the schema itself was hit: refused, with a clear error
    written = {(b.stream, b.seq): b for b in batches}
    for batch in reader.iter_batches():
        assert_same_batch(batch, written[(batch.stream, batch.seq)])
    damage = reader.damage
    assert damage is None or damage.bytes_skipped <= len(data)


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("recorded") / "run"
    batches, _ = record_run(prefix, n_batches=40, seed=21)
    return batches, raw_path(prefix, "pulses").read_bytes()


def test_corrupted_event_block(tmp_path):
    _, events = record_run(tmp_path / "run", seed=4)
    path = raw_path(tmp_path / "run", "events")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle] ^= 0x10
    path.write_bytes(bytes(data))
    reader = RawReader(path)
    got = reader.read_events()
    assert 0 < len(got) < len(events)
    assert np.isin(got["t_ns"], events["t_ns"]).all()
    assert got["t_ns"][-1] == events["t_ns"][-1]
    assert reader.damage.regions[0].last_good_ns < reader.damage.regions[0].resumed_ns


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "empty"),
        (b"hello, this is not arrow at all" * 10, "not a nudaq raw file"),
        (b"\xff\xff\xff\xff\x10\x00\x00\x00" + b"\x00" * 40, "not a nudaq raw file"),
    ],
)
def test_foreign_files_are_refused(tmp_path, content, why):
    path = tmp_path / "x.arrow"
    path.write_bytes(content)
    with pytest.raises(RawFileError, match=why) as err:
        RawReader(path)
    assert str(path) in str(err.value)


def test_arrow_stream_of_someone_else_is_refused(tmp_path):
    path = tmp_path / "other.arrow"
    table = pa.table({"a": [1, 2, 3]})
    with pa.ipc.new_stream(path, table.schema) as writer:
        writer.write_table(table)
    with pytest.raises(RawFileError, match="not a nudaq raw file"):
        RawReader(path)
    with pytest.raises(RawFileError, match="cannot read"):
        RawReader(tmp_path / "missing.arrow")
    future = {"nudaq.format": "nudaq-pulses", "nudaq.format_version": "99", "nudaq.run": "1"}
    future |= {"nudaq.config": "{}", "nudaq.version": "9"}
    with pa.ipc.new_stream(path, table.schema.with_metadata(future)) as writer:
        writer.write_table(table)
    with pytest.raises(RawFileError, match="version 99 is newer"):
        RawReader(path)
    future["nudaq.format_version"] = "1"
    with pa.ipc.new_stream(path, table.schema.with_metadata(future)) as writer:
        writer.write_table(table)
    with pytest.raises(RawFileError, match=r"columns \['a'\] are not those of nudaq"):
        RawReader(path)


@pytest.mark.parametrize("cut_fraction", [0.4, 0.93, 1.0])
def test_a_torn_file_is_continued_after_its_last_intact_message(tmp_path, cut_fraction):
    """A writer that died leaves a file cut anywhere (or closed, cut_fraction 1): a new writer
    continues it after its last intact message, and the file is one intact stream again,
    with its hash and size those of its bytes, readable by pyarrow alone."""
    prefix = tmp_path / "run"
    batches, _ = record_run(prefix)
    path = raw_path(prefix, "pulses")
    data = path.read_bytes()
    cut = int(len(data) * cut_fraction)
    path.write_bytes(data[:cut])
    reader = RawReader(path)
    kept = list(reader.iter_batches())
    rng = np.random.default_rng(9)
    more = [make_batch(rng, 1, 100 + i, 50) for i in range(5)]
    writer = RawWriter(prefix, 7, CONFIG, continue_at=reader.intact_end)
    for batch in more:
        writer.write_batch(batch)
        writer.flush()
    events = make_events(rng, 20, 0)
    writer.write_events(events)
    pulses_info, events_info = writer.close()

    again = RawReader(path)
    got = list(again.iter_batches())
    assert again.damage is None
    assert len(got) == len(kept) + len(more)
    for a, b in zip(got, [*kept, *more], strict=True):
        assert_same_batch(a, b)
    content = path.read_bytes()
    assert content[: reader.intact_end] == data[: reader.intact_end]
    assert pulses_info.bytes == len(content)
    assert pulses_info.sha256 == hashlib.sha256(content).hexdigest()
    table = pa.ipc.open_stream(content).read_all()
    assert table.num_rows == sum(len(b.pulses) for b in got)
    assert RawReader(raw_path(prefix, "events")).read_events().tobytes() == events.tobytes()
    assert events_info.sha256 == hashlib.sha256(raw_path(prefix, "events").read_bytes()).hexdigest()
