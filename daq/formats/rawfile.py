"""Raw run files: every received wire batch and every built HPGe event, as Arrow IPC streams.

A run ``<prefix>`` is recorded in two files of the Arrow IPC *stream* format (a standard
container: any Arrow implementation reads them, no nudaq code needed)::

    <prefix>.pulses.arrow   one record batch (a *block*) per flush of the writer, holding
                            every wire batch (daq.formats.wire.Batch) received since the last one,
                            heartbeats, BOR and EOR included, in arrival order
        columns   t_ns int64 (ns, common clock), adc uint32, channel uint16, flags uint16
                  (daq.core.records.PULSE_DTYPE): the pulses of the block's wire batches, one
                  after the other
        per-block custom metadata:
          batches  the wire headers, lowercase hex of one little-endian 72-byte record per
                   wire batch (BLOCK_HEADER_DTYPE: kind (1 data, 2 BOR, 3 EOR), stream, run,
                   seq, watermark_ns, dead_ns, dropped, lost_frames, n = its pulses, each
                   64 bits, two's complement): wire batch i holds the n pulses after those of i-1
          crc32    decimal: crc32 over the block's wire batches in order, each as its 48-byte
                   packed wire header followed by its PULSE_DTYPE records
    <prefix>.events.arrow   built HPGe events, in time order
        columns   t_ns int64, adc uint32, channel uint16, flags uint16, energy_keV float64,
                  tags uint8 (daq.core.records.EVENT_DTYPE)
        per-batch custom metadata: crc32 (of the EVENT_DTYPE records)

Schema metadata of both files: ``nudaq.format`` (``nudaq-pulses`` or ``nudaq-events``),
``nudaq.format_version`` (2; version 1 pulses files held one record batch per wire batch with
the header fields as decimal custom metadata, and are still read), ``nudaq.run``,
``nudaq.version`` and ``nudaq.config`` (the run's configuration snapshot, JSON). Analysts
open them with pyarrow or pandas::

    reader = pyarrow.ipc.open_stream("run000012.pulses.arrow")
    block, meta = reader.read_next_batch_with_custom_metadata()
    headers = numpy.frombuffer(bytes.fromhex(meta[b"batches"].decode()), "<i8").reshape(-1, 9)
    frame = pyarrow.ipc.open_stream("run000012.events.arrow").read_pandas()

Crash safety: the stream format needs no footer, so every block flushed before a crash is
readable; the writer keeps the wire batches of the block being filled in memory until the
next flush. ``RawReader`` reads every intact message; where a message is truncated or does
not decode (bad framing, wrong columns, checksum mismatch) it scans forward to the next
Arrow message marker (0xFFFFFFFF + length) whose message decodes and verifies, and resumes
there. What it skipped is reported in ``RawReader.damage`` instead of raising.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from daq import __version__
from daq.core.errors import RawFileError
from daq.core.records import EVENT_DTYPE, PULSE_DTYPE
from daq.formats.wire import Batch

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
PULSES = "pulses"
EVENTS = "events"
FORMATS = {PULSES: "nudaq-pulses", EVENTS: "nudaq-events"}
BATCH_KEYS = ("kind", "stream", "run", "seq", "watermark_ns", "dead_ns", "dropped", "lost_frames")
BLOCK_HEADER_DTYPE = np.dtype(
    [(key, "<i8" if key in ("watermark_ns", "dead_ns") else "<u8") for key in (*BATCH_KEYS, "n")]
)
"""One wire batch's header in a pulses block (the ``batches`` custom metadata)."""
BLOCK_MAX_PULSES = 1 << 22
"""A block is written once it holds this many pulses, even before the next flush."""
_MARKER = b"\xff\xff\xff\xff"
_END_OF_STREAM = _MARKER + b"\x00\x00\x00\x00"
_ARROW_ERRORS = (pa.ArrowException, OSError, EOFError, ValueError, StopIteration)


def _schema(dtype: np.dtype) -> pa.Schema:
    return pa.schema([(name, pa.from_numpy_dtype(dtype[name])) for name in dtype.names])


SCHEMAS = {PULSES: _schema(PULSE_DTYPE), EVENTS: _schema(EVENT_DTYPE)}
DTYPES = {PULSES: PULSE_DTYPE, EVENTS: EVENT_DTYPE}


def raw_path(prefix: Path, kind: str) -> Path:
    """The file of one kind ('pulses' or 'events') of the run recorded under ``prefix``."""
    prefix = Path(prefix)
    return prefix.with_name(f"{prefix.name}.{kind}.arrow")


@dataclass(frozen=True, slots=True)
class RawFileInfo:
    """A finished raw file: where, its SHA-256 and its size (bytes)."""

    path: Path
    sha256: str
    bytes: int

    @property
    def kind(self) -> str:
        """'pulses' or 'events', from the file name."""
        return self.path.name.rsplit(".", 2)[-2]


def _to_arrow(records: np.ndarray, kind: str) -> pa.RecordBatch:
    schema = SCHEMAS[kind]
    return pa.record_batch([pa.array(records[name]) for name in schema.names], schema=schema)


def _from_arrow(batch: pa.RecordBatch, kind: str) -> np.ndarray:
    dtype = DTYPES[kind]
    out = np.empty(batch.num_rows, dtype)
    for name in dtype.names:
        out[name] = batch.column(name).to_numpy()
    return out


def _extend_crc(crc: int, batch: Batch) -> int:
    """A block's crc32 extended by one wire batch: its packed header, then its records."""
    pulses = np.ascontiguousarray(batch.pulses, PULSE_DTYPE)
    return zlib.crc32(pulses, zlib.crc32(batch.header(), crc))


def _batches_crc(batches: list[Batch]) -> int:
    """crc32 over the wire batches in order (the block checksum)."""
    crc = 0
    for batch in batches:
        crc = _extend_crc(crc, batch)
    return crc


class _HashingFile:
    """Write-through file: hashes and counts every byte on its way to disk."""

    def __init__(self, path: Path) -> None:
        try:
            self._file = open(path, "xb")
        except FileExistsError:
            raise RawFileError(f"{path} already exists: raw files are never overwritten") from None
        except OSError as err:
            raise RawFileError(f"cannot create {path}: {err.strerror}") from None
        self.path = path
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data) -> int:
        self.sha256.update(data)
        self.bytes += len(data)
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed


class _StreamSink:
    """One Arrow IPC stream being written to one file."""

    def __init__(self, path: Path, kind: str, run: int, config_json: str) -> None:
        metadata = {
            "nudaq.format": FORMATS[kind],
            "nudaq.format_version": str(FORMAT_VERSION),
            "nudaq.run": str(run),
            "nudaq.version": __version__,
            "nudaq.config": config_json,
        }
        self.file = _HashingFile(path)
        self.kind = kind
        self.writer = pa.ipc.new_stream(
            pa.PythonFile(self.file, mode="w"), SCHEMAS[kind].with_metadata(metadata)
        )

    def write(self, records: np.ndarray, metadata: dict[str, str]) -> None:
        self.writer.write_batch(_to_arrow(records, self.kind), custom_metadata=metadata)

    def close(self) -> RawFileInfo:
        self.writer.close()
        self.file.close()
        return RawFileInfo(self.file.path, self.file.sha256.hexdigest(), self.file.bytes)


class _Block:
    """The wire batches received since the last flush: one record batch of a pulses file."""

    def __init__(self) -> None:
        self.headers: list[tuple[int, ...]] = []
        self.pulses: list[np.ndarray] = []
        self.n = 0
        self.crc = 0

    def add(self, batch: Batch) -> None:
        """Append a wire batch, extending the block's checksum."""
        pulses = np.ascontiguousarray(batch.pulses, PULSE_DTYPE)
        self.crc = _extend_crc(self.crc, batch)
        self.headers.append((*(getattr(batch, key) for key in BATCH_KEYS), len(pulses)))
        self.pulses.append(pulses)
        self.n += len(pulses)

    def records(self) -> np.ndarray:
        """The pulses of every wire batch, in arrival order."""
        return np.concatenate(self.pulses)

    def metadata(self) -> dict[str, str]:
        """The custom metadata of the block: wire headers and checksum."""
        headers = np.array(self.headers, BLOCK_HEADER_DTYPE)
        return {"batches": headers.tobytes().hex(), "crc32": str(self.crc)}


class RawWriter:
    """Records one run: wire batches to ``<prefix>.pulses.arrow``, events to ``.events.arrow``.

    Wire batches are kept in memory and written as one block at every ``flush()`` (the
    builder calls it about once a second), at ``close()``, and once a block holds
    BLOCK_MAX_PULSES; bytes reach the OS at every flush and at close. A crash loses at most
    what was received since the last flush.
    """

    def __init__(self, prefix: Path, run: int, config_json: str) -> None:
        Path(prefix).parent.mkdir(parents=True, exist_ok=True)
        self._sinks = {
            kind: _StreamSink(raw_path(prefix, kind), kind, run, config_json) for kind in FORMATS
        }
        self._block = _Block()

    def write_batch(self, batch: Batch) -> None:
        """Add one received wire batch (heartbeats, BOR and EOR included) to the block."""
        self._block.add(batch)
        if self._block.n >= BLOCK_MAX_PULSES:
            self._write_block()

    def _write_block(self) -> None:
        if self._block.headers:
            self._sinks[PULSES].write(self._block.records(), self._block.metadata())
            self._block = _Block()

    def write_events(self, events: np.ndarray) -> None:
        """Append built events (EVENT_DTYPE); an empty array writes nothing."""
        if len(events):
            events = np.ascontiguousarray(events, EVENT_DTYPE)
            self._sinks[EVENTS].write(events, {"crc32": str(zlib.crc32(events))})

    def flush(self) -> None:
        """Write the block and hand everything written so far to the operating system."""
        self._write_block()
        for sink in self._sinks.values():
            sink.file.flush()

    def close(self) -> list[RawFileInfo]:
        """End both streams; returns [pulses file, events file] with hashes and sizes."""
        self._write_block()
        return [sink.close() for sink in self._sinks.values()]

    def __enter__(self) -> RawWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(slots=True)
class DamagedRegion:
    """Bytes a reader had to skip, and the DAQ-clock times (ns) around them.

    ``last_good_ns``/``resumed_ns``: watermark of the last wire batch (pulses) or time of the
    last event (events) read before the gap, and of the first one after it (None: none
    there). The skipped bytes held what was recorded between these two times.
    """

    offset: int
    bytes_skipped: int
    last_good_ns: int | None
    resumed_ns: int | None
    reason: str


@dataclass(slots=True)
class RawDamage:
    """What was wrong with a raw file: the damaged regions, and how many batches were read."""

    path: Path
    batches_read: int
    regions: list[DamagedRegion] = field(default_factory=list)

    @property
    def offset(self) -> int:
        """Byte offset of the first damage."""
        return self.regions[0].offset

    @property
    def bytes_skipped(self) -> int:
        """Total bytes that could not be read."""
        return sum(r.bytes_skipped for r in self.regions)

    def __str__(self) -> str:
        parts = [
            f"at offset {r.offset}: {r.bytes_skipped} bytes skipped"
            f" (after t={r.last_good_ns} ns, resumed t={r.resumed_ns} ns): {r.reason}"
            for r in self.regions
        ]
        return f"{self.path}: {self.batches_read} batches read; " + "; ".join(parts)


class _Undecodable(Exception):
    """The bytes at an offset are not an intact message of this file."""


class RawReader:
    """Reads a raw file of either kind, recovering everything intact around damage.

    ``run``, ``config_json``, ``kind`` and ``nudaq_version`` come from the schema. After a
    full pass (``iter_batches``/``read_events``, or on first access) ``damage`` is None for
    an intact, properly closed file, else a RawDamage.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:
            raise RawFileError(f"{self.path}: empty file, not a nudaq raw file") from None
        except OSError as err:
            raise RawFileError(f"cannot read {self.path}: {err.strerror}") from None
        self._buf = pa.py_buffer(self._map)
        schema, self._data_start = self._read_schema()
        try:
            metadata = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
            self.kind = {name: kind for kind, name in FORMATS.items()}[metadata["nudaq.format"]]
            self.format_version = int(metadata["nudaq.format_version"])
            self.run = int(metadata["nudaq.run"])
            self.config_json = metadata["nudaq.config"]
            self.nudaq_version = metadata["nudaq.version"]
        except (KeyError, ValueError) as err:
            raise RawFileError(
                f"{self.path}: an Arrow stream but not a nudaq raw file (schema metadata: {err})"
            ) from None
        if self.format_version < 1:
            raise RawFileError(f"{self.path}: unknown format version {self.format_version}")
        if self.format_version > FORMAT_VERSION:
            raise RawFileError(
                f"{self.path}: format version {self.format_version} is newer than this nudaq reads"
                f" ({FORMAT_VERSION})"
            )
        if not schema.remove_metadata().equals(SCHEMAS[self.kind]):
            raise RawFileError(f"{self.path}: columns {schema.names} are not those of nudaq")
        self._schema_bytes = SCHEMAS[self.kind].serialize().to_pybytes()  # to decode alone
        self._damage: RawDamage | None = None
        self._scanned = False

    def _read_schema(self) -> tuple[pa.Schema, int]:
        reader = pa.BufferReader(self._buf)
        try:
            message = pa.ipc.read_message(reader)
            if message.type != "schema":
                raise ValueError(f"first message is a {message.type}")
            return pa.ipc.read_schema(message), reader.tell()
        except _ARROW_ERRORS as err:
            raise RawFileError(
                f"{self.path}: not a nudaq raw file (no Arrow IPC stream schema at offset 0: {err})"
            ) from None

    @property
    def damage(self) -> RawDamage | None:
        """What had to be skipped (None: the file is intact and was closed properly)."""
        if not self._scanned:
            for _ in self._scan():
                pass
        return self._damage

    def iter_batches(self) -> Iterator[Batch]:
        """Every intact wire batch of a pulses file, in recorded order."""
        self._require(PULSES)
        for items, _first, _last in self._scan():
            yield from items

    def read_events(self) -> np.ndarray:
        """All intact events of an events file (EVENT_DTYPE)."""
        self._require(EVENTS)
        chunks = [chunk for items, _first, _last in self._scan() for chunk in items]
        return np.concatenate(chunks) if chunks else np.zeros(0, EVENT_DTYPE)

    def _require(self, kind: str) -> None:
        if self.kind != kind:
            raise RawFileError(f"{self.path} holds {self.kind}, not {kind}")

    def _scan(self) -> Iterator[tuple]:
        """(items, first_ns, last_ns) for each intact message (items: its wire batches, or
        its events array); records damage on the way."""
        size = self._buf.size
        regions: list[DamagedRegion] = []
        read = 0
        last_ns = None
        pos = self._data_start
        while pos < size and self._map[pos : pos + 8] != _END_OF_STREAM:
            try:
                (items, first_ns, end_ns), end = self._decode_at(pos)
            except _Undecodable as err:
                resume = self._resync(pos)
                regions.append(DamagedRegion(pos, resume - pos, last_ns, None, str(err)))
                pos = resume
                continue
            if regions and regions[-1].resumed_ns is None:
                regions[-1].resumed_ns = first_ns
            read += len(items)
            last_ns = last_ns if end_ns is None else end_ns
            pos = end
            yield items, first_ns, end_ns
        if pos >= size and not (regions and regions[-1].offset + regions[-1].bytes_skipped == size):
            regions.append(
                DamagedRegion(size, 0, last_ns, None, "no end-of-stream marker: file not closed")
            )
        self._damage = RawDamage(self.path, read, regions) if regions else None
        self._scanned = True
        if regions:
            log.warning("damaged raw file %s", self._damage)

    def _resync(self, pos: int) -> int:
        """Offset of the next intact message (or final end-of-stream marker) after ``pos``."""
        size = self._buf.size
        candidate = self._map.find(_MARKER, pos + 1)
        while candidate >= 0:
            if candidate == size - 8 and self._map[candidate:] == _END_OF_STREAM:
                return candidate
            try:
                self._decode_at(candidate)
                return candidate
            except _Undecodable:
                candidate = self._map.find(_MARKER, candidate + 1)
        return size

    def _decode_at(self, pos: int) -> tuple[tuple, int]:
        """The verified items of the message at ``pos`` and the offset after the message."""
        reader = pa.BufferReader(self._buf.slice(pos))
        try:
            message = pa.ipc.read_message(reader)
            if message.type != "record batch":
                raise ValueError(f"a {message.type} message")
            end = pos + reader.tell()
            stream = pa.ipc.open_stream(
                self._schema_bytes + self._buf.slice(pos, end - pos).to_pybytes()
            )
            batch, custom = stream.read_next_batch_with_custom_metadata()
            metadata = {k.decode(): v.decode() for k, v in (custom or {}).items()}
            crc = int(metadata["crc32"])
            records = _from_arrow(batch, self.kind)
        except (*_ARROW_ERRORS, KeyError) as err:
            raise _Undecodable(f"no intact record batch at offset {pos} ({err})") from None
        if self.kind == EVENTS:
            if zlib.crc32(records) != crc:
                raise _Undecodable(f"event batch at offset {pos} fails its checksum")
            if not len(records):
                return ([records], None, None), end
            return ([records], int(records["t_ns"][0]), int(records["t_ns"][-1])), end
        try:
            batches = self._wire_batches(records, metadata)
            valid = _batches_crc(batches) == crc
        except (KeyError, ValueError, struct.error) as err:
            raise _Undecodable(f"batch at offset {pos} has a bad header ({err})") from None
        if not valid:
            raise _Undecodable(f"batch at offset {pos} fails its checksum")
        if not batches:
            return ([], None, None), end
        return (batches, batches[0].watermark_ns, batches[-1].watermark_ns), end

    def _wire_batches(self, records: np.ndarray, metadata: dict[str, str]) -> list[Batch]:
        """The wire batches of a pulses record batch: a block (format 2) or one (format 1)."""
        if self.format_version == 1:
            return [Batch(pulses=records, **{key: int(metadata[key]) for key in BATCH_KEYS})]
        headers = np.frombuffer(bytes.fromhex(metadata["batches"]), BLOCK_HEADER_DTYPE)
        counts = headers["n"].astype(object)  # Python ints: no wrap-around
        if sum(counts) != len(records):
            raise ValueError(f"headers count {sum(counts)} pulses, the block holds {len(records)}")
        batches, start = [], 0
        for *fields, n in headers.tolist():
            header = dict(zip(BATCH_KEYS, fields, strict=True))
            batches.append(Batch(pulses=records[start : start + n], **header))
            start += n
        return batches


def open_pulses(path: str | Path) -> RawReader:
    """The reader of a raw pulses file, its schema checked (RawFileError if it is not one):
    run number and configuration without a pass over the file."""
    reader = RawReader(path)  # validates the schema and names the file in its errors
    if reader.kind != PULSES:
        raise RawFileError(f"{reader.path} holds {reader.kind}, not pulses: replay a .pulses file")
    return reader
