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
          batches  the wire headers, lowercase hex of one little-endian 88-byte record per
                   wire batch (daq.formats.rawblock: kind (1 data, 2 BOR, 3 EOR), stream, run,
                   seq, watermark_ns, dead_ns, dropped, lost_frames, gap, covered_from_ns,
                   n = its pulses, each 64 bits, two's complement): wire batch i holds the n
                   pulses after those of i-1
          crc32    decimal: crc32 over the block's wire batches in order, each as its 56-byte
                   packed wire header followed by its PULSE_DTYPE records
    <prefix>.events.arrow   built HPGe events, in time order
        columns   t_ns int64, adc uint32, channel uint16, flags uint16, energy_keV float64,
                  tags uint8 (daq.core.records.EVENT_DTYPE)
        per-batch custom metadata: crc32 (of the EVENT_DTYPE records)

Schema metadata of both files: ``nudaq.format`` (``nudaq-pulses`` or ``nudaq-events``),
``nudaq.format_version`` (3; version 2 recorded no coverage and no checksum, version 1 held one
record batch per wire batch with the header fields as decimal custom metadata; both are still
read), ``nudaq.run``, ``nudaq.version``, ``nudaq.config`` (the run's configuration snapshot,
JSON) and, from format 3 on, ``nudaq.checksum``: SHA-256 (lowercase hex) of every other
``nudaq.*`` key and its value, encoded as one UTF-8 JSON object with the keys sorted and no
whitespace (``json.dumps(keys, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``,
see ``header_checksum``). The reader verifies it on open wherever it is present, and refuses
with RawHeaderError (daq.core.errors) a file whose checksum fails, a format 3 file without
one, and a recorded configuration that is not valid JSON or not a valid configuration: one
flipped bit must not replay a run under a configuration it was never taken with. Analysts
open them with pyarrow or pandas::

    reader = pyarrow.ipc.open_stream("run000012.pulses.arrow")
    block, meta = reader.read_next_batch_with_custom_metadata()
    headers = numpy.frombuffer(bytes.fromhex(meta[b"batches"].decode()), "<i8").reshape(-1, 11)
    frame = pyarrow.ipc.open_stream("run000012.events.arrow").read_pandas()

Crash safety: the stream format needs no footer, so every block flushed before a crash is
readable; the writer keeps the wire batches of the block being filled in memory until the
next flush. ``RawReader`` reads every intact message; where a message is truncated or does
not decode (bad framing, wrong columns, checksum mismatch) it scans forward to the next
Arrow message marker (0xFFFFFFFF + length) whose message decodes and verifies, and resumes
there. What it skipped is reported in ``RawReader.damage`` instead of raising. Against a power
cut, ``RawWriter`` fsyncs the files in a background thread at its configured interval and
always at close (see RawWriter).
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import struct
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from daq import __version__
from daq.core.config import Config, parse_config
from daq.core.errors import ConfigError, RawFileError, RawHeaderError
from daq.core.records import EVENT_DTYPE, PULSE_DTYPE
from daq.formats.rawblock import batch_keys, block_dtype, packed_header
from daq.formats.wire import Batch

log = logging.getLogger(__name__)

FORMAT_VERSION = 3
PULSES = "pulses"
EVENTS = "events"
FORMATS = {PULSES: "nudaq-pulses", EVENTS: "nudaq-events"}
BLOCK_MAX_PULSES = 1 << 22
"""A block is written once it holds this many pulses, even before the next flush."""
_KEYS = batch_keys(FORMAT_VERSION)
_BLOCK_DTYPE = block_dtype(FORMAT_VERSION)
_MARKER = b"\xff\xff\xff\xff"
_END_OF_STREAM = _MARKER + b"\x00\x00\x00\x00"
_ARROW_ERRORS = (pa.ArrowException, OSError, EOFError, ValueError, StopIteration)
CHECKSUM_KEY = "nudaq.checksum"
CHECKSUM_FORMAT = 3
"""The first format version whose schema metadata must carry CHECKSUM_KEY."""
_monotonic = time.monotonic
"""The clock of the fsync policy (s)."""


def header_checksum(metadata: dict[str, str]) -> str:
    """SHA-256 (hex) of the canonical encoding of every ``nudaq.*`` schema key but
    CHECKSUM_KEY: the UTF-8 JSON object of those keys and values, keys sorted, no spaces."""
    covered = {k: v for k, v in metadata.items() if k.startswith("nudaq.") and k != CHECKSUM_KEY}
    text = json.dumps(covered, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


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


def _schema_message_bytes(schema: pa.Schema) -> int:
    """The length of the schema message that opens an Arrow IPC stream of ``schema``."""
    sink = pa.BufferOutputStream()
    pa.ipc.new_stream(sink, schema).close()
    return sink.getvalue().size - len(_END_OF_STREAM)


def _to_arrow(records: np.ndarray, kind: str) -> pa.RecordBatch:
    schema = SCHEMAS[kind]
    return pa.record_batch([pa.array(records[name]) for name in schema.names], schema=schema)


def _from_arrow(batch: pa.RecordBatch, kind: str) -> np.ndarray:
    dtype = DTYPES[kind]
    out = np.empty(batch.num_rows, dtype)
    for name in dtype.names:
        out[name] = batch.column(name).to_numpy()
    return out


def _extend_crc(crc: int, batch: Batch, version: int = FORMAT_VERSION) -> int:
    """A block's crc32 extended by one wire batch: its packed header (as a file of format
    ``version`` packs it, daq.formats.rawblock), then its records."""
    pulses = np.ascontiguousarray(batch.pulses, PULSE_DTYPE)
    return zlib.crc32(pulses, zlib.crc32(packed_header(batch, version), crc))


def _batches_crc(batches: list[Batch], version: int) -> int:
    """crc32 over the wire batches in order (the block checksum)."""
    crc = 0
    for batch in batches:
        crc = _extend_crc(crc, batch, version)
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

    @classmethod
    def continued(cls, path: Path, keep_bytes: int) -> _HashingFile:
        """The existing file cut after ``keep_bytes`` and opened for appending; what it keeps
        is hashed and counted."""
        self = cls.__new__(cls)
        try:
            self._file = open(path, "r+b")
            self._file.truncate(keep_bytes)
        except OSError as err:
            raise RawFileError(f"cannot continue {path}: {err.strerror}") from None
        self.path, self.sha256, self.bytes = path, hashlib.sha256(), keep_bytes
        while chunk := self._file.read(1 << 22):
            self.sha256.update(chunk)
        return self

    def write(self, data) -> int:
        self.sha256.update(data)
        self.bytes += len(data)
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def sync(self) -> None:
        """fsync: what the OS holds of the file reaches the disk (RawFileError if not)."""
        try:
            os.fsync(self._file.fileno())
        except OSError as err:
            raise RawFileError(f"cannot fsync {self.path}: {err.strerror}") from None

    def close(self) -> None:
        self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed


class _SkipFirst:
    """A file that drops the first ``skip`` bytes written to it (a continued stream's
    second schema message), then passes everything on."""

    def __init__(self, file: _HashingFile, skip: int) -> None:
        self.file = file
        self.skip = skip

    def write(self, data) -> int:
        data = memoryview(data)
        dropped = min(self.skip, len(data))
        self.skip -= dropped
        if dropped < len(data):
            self.file.write(data[dropped:])
        return len(data)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()

    @property
    def closed(self) -> bool:
        return self.file.closed


class _StreamSink:
    """One Arrow IPC stream being written to one file; with ``continue_at`` (bytes), the
    existing stream of the file, cut there after its last intact message, is continued."""

    def __init__(
        self, path: Path, kind: str, run: int, config_json: str, continue_at: int | None = None
    ) -> None:
        metadata = {
            "nudaq.format": FORMATS[kind],
            "nudaq.format_version": str(FORMAT_VERSION),
            "nudaq.run": str(run),
            "nudaq.version": __version__,
            "nudaq.config": config_json,
        }
        metadata[CHECKSUM_KEY] = header_checksum(metadata)
        schema = SCHEMAS[kind].with_metadata(metadata)
        self.kind = kind
        if continue_at is None:
            self.file = _HashingFile(path)
            out = self.file
        else:
            self.file = _HashingFile.continued(path, continue_at)
            out = _SkipFirst(self.file, _schema_message_bytes(schema))
        self.writer = pa.ipc.new_stream(pa.PythonFile(out, mode="w"), schema)

    def write(self, records: np.ndarray, metadata: dict[str, str]) -> None:
        self.writer.write_batch(_to_arrow(records, self.kind), custom_metadata=metadata)

    def end(self) -> None:
        """Write the end-of-stream marker and hand everything to the OS."""
        self.writer.close()
        self.file.flush()

    def close(self) -> RawFileInfo:
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
        self.headers.append((*(getattr(batch, key) for key in _KEYS), len(pulses)))
        self.pulses.append(pulses)
        self.n += len(pulses)

    def records(self) -> np.ndarray:
        """The pulses of every wire batch, in arrival order."""
        return np.concatenate(self.pulses)

    def metadata(self) -> dict[str, str]:
        """The custom metadata of the block: wire headers and checksum."""
        headers = np.array(self.headers, _BLOCK_DTYPE)
        return {"batches": headers.tobytes().hex(), "crc32": str(self.crc)}


class RawWriter:
    """Records one run: wire batches to ``<prefix>.pulses.arrow``, events to ``.events.arrow``.

    Wire batches are kept in memory and written as one block at every ``flush()`` (the
    builder calls it about once a second), at ``close()``, and once a block holds
    BLOCK_MAX_PULSES; bytes reach the OS at every flush and at close. A crash of the process
    loses at most what was received since the last flush.

    ``continue_at`` (bytes, RawReader.intact_end of the run's pulses file) continues a run
    whose writer died: the pulses file is cut after its last intact message and appended to,
    its header and everything before kept; the events file is written anew (the events are
    built again from the pulses kept, daq.store.rebuild).

    fsync policy (a power cut or kernel crash loses what the OS had not written to the disk):
    with ``fsync_interval_s`` (the builder's ``builder.raw_fsync_interval_s``), a flush at
    least that long after the last fsync began starts one (0: every flush) in a background
    thread, so the caller never waits on the disk; an fsync still running when the next is
    due is not queued (the next flush starts it, and each covers everything before it). The
    first also syncs the directory (the files' names). None: no fsync but the one at
    ``close()``, which always syncs. ``fsyncs`` and ``fsync_s`` count them and their wall time
    (s). A failed fsync raises RawFileError at the next flush or at close.
    """

    def __init__(
        self,
        prefix: Path,
        run: int,
        config_json: str,
        fsync_interval_s: float | None = None,
        continue_at: int | None = None,
    ) -> None:
        Path(prefix).parent.mkdir(parents=True, exist_ok=True)
        if continue_at is not None:  # the events are built again from the pulses kept
            raw_path(prefix, EVENTS).unlink(missing_ok=True)
        self._sinks = {
            kind: _StreamSink(
                raw_path(prefix, kind),
                kind,
                run,
                config_json,
                continue_at if kind == PULSES else None,
            )
            for kind in FORMATS
        }
        self._block = _Block()
        self.fsyncs = 0
        self.fsync_s = 0.0
        self._fsync_interval_s = fsync_interval_s
        self._fsync_due_s = _monotonic() + (fsync_interval_s or 0.0)
        self._fsync_job: Future | None = None
        self._fsync_pool = (
            None
            if fsync_interval_s is None
            else ThreadPoolExecutor(max_workers=1, thread_name_prefix="raw-fsync")
        )
        self._directory_synced = False

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
        """Write the block, hand everything written so far to the operating system, and
        start an fsync if the policy says one is due (see the class doc)."""
        self._write_block()
        for sink in self._sinks.values():
            sink.file.flush()
        if self._fsync_pool is None:
            return
        if self._fsync_job is not None:
            if not self._fsync_job.done():
                return  # the disk is behind: the next flush tries again
            self._fsync_job.result()  # a failed fsync raises here
            self._fsync_job = None
        now = _monotonic()
        if now >= self._fsync_due_s:
            self._fsync_due_s = now + self._fsync_interval_s
            self._fsync_job = self._fsync_pool.submit(self._sync)

    def close(self) -> list[RawFileInfo]:
        """End both streams and fsync them; returns [pulses file, events file] with hashes
        and sizes."""
        try:
            self._write_block()
            for sink in self._sinks.values():
                sink.end()
            if self._fsync_job is not None:
                self._fsync_job.result()
            self._sync()
        finally:
            if self._fsync_pool is not None:
                self._fsync_pool.shutdown()  # waits: no fsync of a closed file
            infos = [sink.close() for sink in self._sinks.values()]
        return infos

    def _sync(self) -> None:
        """fsync both files, and their directory the first time."""
        start = time.perf_counter()
        for sink in self._sinks.values():
            sink.file.sync()
        if not self._directory_synced:
            self._directory_synced = True
            _sync_directory(self._sinks[PULSES].file.path.parent)
        self.fsyncs += 1
        self.fsync_s += time.perf_counter() - start

    def __enter__(self) -> RawWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _sync_directory(path: Path) -> None:
    """fsync a directory, so the names of new files in it survive a power cut (a file
    system that cannot is only warned about: the files' contents are synced)."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        log.warning("cannot fsync directory %s: %s", path, err.strerror)


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

    ``run``, ``config_json`` (and ``config``, parsed), ``kind`` and ``nudaq_version`` come
    from the schema, checked on open: RawHeaderError when its checksum fails (or a file of
    format 3 or later has none) or the recorded configuration is not a valid one. After a
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
        metadata = self._checked_metadata(schema)
        try:
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
        if CHECKSUM_KEY not in metadata and self.format_version >= CHECKSUM_FORMAT:
            raise RawHeaderError(
                f"{self.path}: damaged header: format version {self.format_version} but no"
                f" {CHECKSUM_KEY} in the schema metadata"
            )
        if not schema.remove_metadata().equals(SCHEMAS[self.kind]):
            raise RawFileError(
                f"{self.path}: columns {_column_names(schema)} are not those of nudaq"
            )
        self.config = self._recorded_config()
        self._schema_bytes = SCHEMAS[self.kind].serialize().to_pybytes()  # to decode alone
        self._check_schema_end()
        self._damage: RawDamage | None = None
        self._scanned = False

    def _checked_metadata(self, schema: pa.Schema) -> dict[str, str]:
        """The schema metadata as text, its checksum verified if it has one (any version:
        a damaged version number must not turn the check off)."""
        try:
            metadata = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
        except UnicodeDecodeError as err:
            raise RawHeaderError(
                f"{self.path}: damaged header: schema metadata that is not UTF-8 text ({err})"
            ) from None
        recorded = metadata.get(CHECKSUM_KEY)
        if recorded is not None and recorded != (computed := header_checksum(metadata)):
            raise RawHeaderError(
                f"{self.path}: damaged header: the schema metadata (run, configuration,"
                f" versions) fails its checksum: {CHECKSUM_KEY} {recorded!r}, computed {computed}"
            )
        return metadata

    def _recorded_config(self) -> Config:
        """The recorded configuration snapshot, validated."""
        try:
            data = json.loads(self.config_json)
        except json.JSONDecodeError as err:
            raise RawHeaderError(
                f"{self.path}: the recorded configuration is not valid JSON ({err})"
            ) from None
        if not isinstance(data, dict):
            raise RawHeaderError(
                f"{self.path}: the recorded configuration is a JSON {type(data).__name__},"
                " not an object"
            )
        try:
            return parse_config(data, "recorded configuration")
        except ConfigError as err:
            raise RawHeaderError(f"{self.path}: " + "; ".join(str(err).splitlines())) from None

    def _check_schema_end(self) -> None:
        """RawHeaderError if the schema message's length (bytes 4-7, outside the checksum)
        is damaged: Arrow pads messages to 8 bytes, and no message may start inside it."""
        end = self._data_start
        if end % 8:
            raise RawHeaderError(
                f"{self.path}: damaged header: the schema message ends at offset {end},"
                " not on an 8-byte boundary (its length, bytes 4-7, is wrong)"
            )
        pos = self._map.find(_MARKER, 8, end)
        while pos >= 0:
            if pos % 8 == 0 and self._message_at(pos):
                raise RawHeaderError(
                    f"{self.path}: damaged header: the schema message's length (bytes 4-7)"
                    f" makes it end at offset {end}, but a message starts at offset {pos}"
                )
            pos = self._map.find(_MARKER, pos + 1, end)

    def _message_at(self, pos: int) -> bool:
        """Whether an intact record batch or the end-of-stream marker starts at ``pos``."""
        if self._map[pos : pos + 8] == _END_OF_STREAM:
            return True
        try:
            self._decode_at(pos)
        except _Undecodable:
            return False
        return True

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

    def close(self) -> None:
        """Release the file (what was read stays valid: records are copied out of it)."""
        self._buf = None
        self._map.close()

    @property
    def intact_end(self) -> int:
        """The offset just after the last intact message (bytes; after a full pass): where a
        writer that continues the file goes on (daq.formats.rawfile.RawWriter)."""
        self.damage  # noqa: B018 -- the full pass
        return self._intact_end

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
        self._intact_end = pos
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
            pos = self._intact_end = end
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
            valid = _batches_crc(batches, self.format_version) == crc
        except (KeyError, ValueError, struct.error) as err:
            raise _Undecodable(f"batch at offset {pos} has a bad header ({err})") from None
        if not valid:
            raise _Undecodable(f"batch at offset {pos} fails its checksum")
        if not batches:
            return ([], None, None), end
        return (batches, batches[0].watermark_ns, batches[-1].watermark_ns), end

    def _wire_batches(self, records: np.ndarray, metadata: dict[str, str]) -> list[Batch]:
        """The wire batches of a pulses record batch: a block (format 2) or one (format 1)."""
        keys = batch_keys(self.format_version)
        if self.format_version == 1:
            return [Batch(pulses=records, **{key: int(metadata[key]) for key in keys})]
        dtype = block_dtype(self.format_version)
        headers = np.frombuffer(bytes.fromhex(metadata["batches"]), dtype)
        counts = headers["n"].astype(object)  # Python ints: no wrap-around
        if sum(counts) != len(records):
            raise ValueError(f"headers count {sum(counts)} pulses, the block holds {len(records)}")
        batches, start = [], 0
        for *fields, n in headers.tolist():
            header = dict(zip(keys, fields, strict=True))
            batches.append(Batch(pulses=records[start : start + n], **header))
            start += n
        return batches


def _column_names(schema: pa.Schema) -> list[str] | str:
    """The column names of a schema, for a message (damaged names may not decode)."""
    try:
        return schema.names
    except UnicodeDecodeError:
        return "(names that are not UTF-8 text)"


def open_pulses(path: str | Path) -> RawReader:
    """The reader of a raw pulses file, its schema checked (RawFileError if it is not one):
    run number and configuration without a pass over the file."""
    reader = RawReader(path)  # validates the schema and names the file in its errors
    if reader.kind != PULSES:
        raise RawFileError(f"{reader.path} holds {reader.kind}, not pulses: replay a .pulses file")
    return reader
