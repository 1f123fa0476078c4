"""Raw files that prove themselves: the header checksum, and the writer's fsync policy."""

from __future__ import annotations

import json
import os
import threading
import zlib

import numpy as np
import pyarrow as pa
import pytest

from daq.core.config import Config
from daq.core.errors import RawFileError, RawHeaderError
from daq.core.records import PULSE_DTYPE
from daq.formats import rawfile
from daq.formats.rawblock import batch_keys, block_dtype, packed_header
from daq.formats.rawfile import (
    CHECKSUM_KEY,
    FORMAT_VERSION,
    SCHEMAS,
    RawReader,
    RawWriter,
    header_checksum,
    raw_path,
)
from daq.formats.wire import KIND_DATA, Batch

CONFIG = Config().snapshot()


def make_batch(rng: np.random.Generator, stream: int, seq: int, n: int) -> Batch:
    pulses = np.zeros(n, PULSE_DTYPE)
    pulses["t_ns"] = np.sort(rng.integers(0, 2**40, n))
    pulses["adc"] = rng.integers(0, 2**32, n, dtype=np.uint32)
    pulses["channel"] = rng.integers(0, 2**16, n, dtype=np.uint16)
    return Batch(KIND_DATA, stream, 7, seq, 1_000_000 * seq, pulses, seq * 3)


def record(prefix, n_batches: int = 12, **writer_options) -> list[Batch]:
    rng = np.random.default_rng(3)
    batches = [make_batch(rng, i % 3, i, int(rng.integers(0, 80))) for i in range(n_batches)]
    with RawWriter(prefix, 7, CONFIG, **writer_options) as writer:
        for i, batch in enumerate(batches):
            writer.write_batch(batch)
            if i % 4 == 3:
                writer.flush()
    return batches


def read_all(path) -> list[tuple]:
    reader = RawReader(path)
    batches = [(b.stream, b.seq, b.watermark_ns, b.pulses.tobytes()) for b in reader.iter_batches()]
    return batches if reader.damage is None else []


@pytest.fixture
def recorded(tmp_path):
    batches = record(tmp_path / "run")
    path = raw_path(tmp_path / "run", "pulses")
    return path, path.read_bytes(), batches


def write_stream(path, metadata: dict[str, str], blocks: list[tuple] = ()) -> None:
    """An Arrow stream of the pulses schema with this metadata and (records, custom) blocks."""
    with pa.ipc.new_stream(path, SCHEMAS["pulses"].with_metadata(metadata)) as writer:
        for records, custom in blocks:
            columns = [pa.array(records[name]) for name in SCHEMAS["pulses"].names]
            batch = pa.record_batch(columns, schema=SCHEMAS["pulses"])
            writer.write_batch(batch, custom_metadata=custom)


def metadata(version: int = FORMAT_VERSION, config: str = CONFIG) -> dict[str, str]:
    meta = {"nudaq.format": "nudaq-pulses", "nudaq.format_version": str(version)}
    return meta | {"nudaq.run": "7", "nudaq.version": "0", "nudaq.config": config}


def test_the_header_carries_its_checksum(recorded):
    path, _, _ = recorded
    meta = {k.decode(): v.decode() for k, v in pa.ipc.open_stream(path).schema.metadata.items()}
    assert meta["nudaq.format_version"] == "3"
    covered = {k: v for k, v in meta.items() if k != CHECKSUM_KEY}
    canonical = json.dumps(covered, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert meta[CHECKSUM_KEY] == header_checksum(meta)
    assert len(meta[CHECKSUM_KEY]) == 64
    import hashlib

    assert meta[CHECKSUM_KEY] == hashlib.sha256(canonical.encode()).hexdigest()
    reader = RawReader(path)
    assert reader.config == Config()
    events = RawReader(raw_path(path.parent / "run", "events"))
    assert events.kind == "events" and events.config == Config()


def test_one_flipped_bit_in_the_recorded_config_is_refused(recorded):
    path, original, _ = recorded
    needle = b'"ac_window_ns":1000,'
    assert original.count(needle) == 1
    at = original.index(needle) + len(b'"ac_window_ns":')
    data = bytearray(original)
    data[at] ^= ord("1") ^ ord("9")  # 1000 -> 9000: one bit
    path.write_bytes(bytes(data))
    with pytest.raises(RawHeaderError, match="fails its checksum") as err:
        RawReader(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message


def test_a_damaged_version_does_not_turn_the_check_off(recorded):
    path, original, _ = recorded
    value = b"\x01\x00\x00\x003\x00"  # the flatbuffer string "3": length, text, NUL
    assert original.count(value) == 1
    data = bytearray(original)
    data[original.index(value) + 4] ^= 0x01  # "3" -> "2"
    path.write_bytes(bytes(data))
    with pytest.raises(RawHeaderError, match="checksum"):
        RawReader(path)


def test_format_3_without_checksum_is_refused(tmp_path):
    path = tmp_path / "x.pulses.arrow"
    write_stream(path, metadata())
    with pytest.raises(RawHeaderError, match=f"no {CHECKSUM_KEY}") as err:
        RawReader(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("config", "why"),
    [
        ('{"builder": {"ac_window_ns": 1000.0', "not valid JSON"),
        ("[1, 2]", "not an object"),
        ('{"builder": {"ac_window_ns": -5, "no_such_key": 1}}', "ac_window_ns.*; .*no_such_key"),
    ],
)
@pytest.mark.parametrize("version", [2, 3])
def test_a_recorded_config_that_is_not_valid_is_refused(tmp_path, config, why, version):
    path = tmp_path / "x.pulses.arrow"
    meta = metadata(version, config)
    if version >= 3:
        meta[CHECKSUM_KEY] = header_checksum(meta)  # written so: the checksum holds
    write_stream(path, meta)
    with pytest.raises(RawHeaderError, match=why) as err:
        RawReader(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_format_2_without_checksum_is_still_read(tmp_path):
    rng = np.random.default_rng(5)
    batches = [make_batch(rng, i % 3, i, int(rng.integers(0, 40))) for i in range(5)]
    headers = np.array(
        [(*(getattr(b, key) for key in batch_keys(2)), len(b.pulses)) for b in batches],
        block_dtype(2),
    )
    crc = 0
    for b in batches:
        crc = zlib.crc32(b.pulses, zlib.crc32(packed_header(b, 2), crc))
    custom = {"batches": headers.tobytes().hex(), "crc32": str(crc)}
    path = tmp_path / "old.pulses.arrow"
    write_stream(path, metadata(2), [(np.concatenate([b.pulses for b in batches]), custom)])
    reader = RawReader(path)
    got = list(reader.iter_batches())
    assert [(b.stream, b.seq, b.pulses.tobytes()) for b in got] == [
        (b.stream, b.seq, b.pulses.tobytes()) for b in batches
    ]
    assert reader.damage is None and reader.format_version == 2


@pytest.mark.parametrize(("byte", "bit"), [(4, 0), (4, 2), (4, 4), (5, 0), (5, 2), (5, 6)])
def test_a_damaged_schema_length_is_refused(recorded, byte, bit):
    path, original, _ = recorded
    data = bytearray(original)
    data[byte] ^= 1 << bit
    path.write_bytes(bytes(data))
    try:
        got = read_all(path)
    except RawFileError as err:
        assert str(path) in str(err)
        return
    pytest.fail(f"read {len(got)} batches of a file whose schema length is damaged")


def test_single_bit_flips_in_the_header_are_refused_or_harmless(recorded, tmp_path):
    path, original, _ = recorded
    reference = read_all(path)
    header_end = RawReader(path)._data_start
    rng = np.random.default_rng(11)
    outcomes = {"refused": 0, "identical": 0}
    for at, bit in zip(rng.integers(0, header_end, 200), rng.integers(0, 8, 200), strict=True):
        data = bytearray(original)
        data[at] ^= 1 << bit
        flipped = tmp_path / "flipped.pulses.arrow"
        flipped.write_bytes(bytes(data))
        try:
            got = read_all(flipped)
        except RawFileError as err:
            assert str(flipped) in str(err) and "\n" not in str(err)
            outcomes["refused"] += 1
            continue
        assert got == reference, f"bit {bit} of byte {at}"
        outcomes["identical"] += 1
    assert outcomes["refused"] > 150


# -- fsync policy ------------------------------------------------------------------------------


class FakeDisk:
    """os.fsync and the policy's clock, replaced: which files were synced, in which thread."""

    def __init__(self, monkeypatch) -> None:
        self.now = 1000.0
        self.calls: list[tuple[int, str]] = []  # (inode, thread name)
        self.gate = threading.Event()
        self.gate.set()
        self.error: OSError | None = None
        monkeypatch.setattr(rawfile, "_monotonic", lambda: self.now)
        monkeypatch.setattr(rawfile.os, "fsync", self.fsync)

    def fsync(self, fd: int) -> None:
        self.gate.wait(10)
        if self.error is not None:
            raise self.error
        self.calls.append((os.fstat(fd).st_ino, threading.current_thread().name))

    def synced(self, path) -> list[str]:
        """The threads that synced the file at ``path``, in order."""
        inode = path.stat().st_ino
        return [thread for ino, thread in self.calls if ino == inode]


def flush_at(writer: RawWriter, disk: FakeDisk, now: float) -> None:
    disk.now = now
    writer.flush()
    if writer._fsync_job is not None:
        writer._fsync_job.exception(10)  # let the background fsync finish


def test_without_interval_only_close_syncs(tmp_path, monkeypatch):
    disk = FakeDisk(monkeypatch)
    writer = RawWriter(tmp_path / "run", 7, CONFIG)
    for t in range(5):
        flush_at(writer, disk, 1000.0 + 10 * t)
    assert disk.calls == []
    infos = writer.close()
    main = threading.current_thread().name
    for info in infos:
        assert disk.synced(info.path) == [main]
    assert disk.synced(tmp_path) == [main]  # the directory: the files' names
    assert writer.fsyncs == 1


def test_interval_syncs_in_the_background_and_always_at_close(tmp_path, monkeypatch):
    disk = FakeDisk(monkeypatch)
    writer = RawWriter(tmp_path / "run", 7, CONFIG, fsync_interval_s=5.0)
    pulses = raw_path(tmp_path / "run", "pulses")
    for now in (1000.0, 1001.0, 1004.9):
        flush_at(writer, disk, now)
    assert disk.calls == []  # the first is due 5 s after the start
    flush_at(writer, disk, 1005.0)
    background = disk.synced(pulses)
    assert len(background) == 1 and background[0].startswith("raw-fsync")
    assert disk.synced(tmp_path) == background  # the directory, with the first
    for now in (1006.0, 1009.9):
        flush_at(writer, disk, now)
    assert len(disk.synced(pulses)) == 1
    flush_at(writer, disk, 1010.0)
    assert len(disk.synced(pulses)) == 2
    writer.close()
    assert disk.synced(pulses)[-1] == threading.current_thread().name
    assert len(disk.synced(pulses)) == 3 and len(disk.synced(tmp_path)) == 1
    assert writer.fsyncs == 3


def test_interval_zero_syncs_at_every_flush(tmp_path, monkeypatch):
    disk = FakeDisk(monkeypatch)
    writer = RawWriter(tmp_path / "run", 7, CONFIG, fsync_interval_s=0.0)
    events = raw_path(tmp_path / "run", "events")
    for _ in range(4):
        flush_at(writer, disk, 1000.0)  # the clock stands still: still every flush
    assert len(disk.synced(events)) == 4
    writer.close()
    assert len(disk.synced(events)) == 5


def test_a_slow_disk_never_holds_the_caller_nor_queues_fsyncs(tmp_path, monkeypatch):
    disk = FakeDisk(monkeypatch)
    writer = RawWriter(tmp_path / "run", 7, CONFIG, fsync_interval_s=0.0)
    pulses = raw_path(tmp_path / "run", "pulses")
    disk.gate.clear()  # the disk hangs
    rng = np.random.default_rng(1)
    for seq in range(5):
        writer.write_batch(make_batch(rng, 0, seq, 50))
        writer.flush()  # returns although the fsync it started hangs
    assert len(disk.calls) == 0
    disk.gate.set()
    writer._fsync_job.result(10)
    assert len(disk.synced(pulses)) == 1  # the flushes meanwhile queued none
    flush_at(writer, disk, 1000.0)
    assert len(disk.synced(pulses)) == 2
    writer.close()
    assert len(read_all(pulses)) == 5


def test_a_failed_fsync_is_raised_naming_the_file(tmp_path, monkeypatch):
    disk = FakeDisk(monkeypatch)
    writer = RawWriter(tmp_path / "run", 7, CONFIG, fsync_interval_s=0.0)
    disk.error = OSError(5, "Input/output error")
    flush_at(writer, disk, 1000.0)
    with pytest.raises(RawFileError, match=r"cannot fsync .*run\.pulses\.arrow: Input/output"):
        writer.flush()
    with pytest.raises(RawFileError, match="cannot fsync"):
        writer.close()
    assert all(sink.file.closed for sink in writer._sinks.values())
