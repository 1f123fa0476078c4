"""SQL writes that survive database outages: queued, journaled, applied exactly once.

A process that writes SQL while it takes data (the builder's spectrum increments, slow
control's readings, run control's end of a run) hands each write to its DurableWriter and
goes on: ``submit`` never waits for the database. A background thread applies the writes in
the order they were submitted, each in its own transaction. While the database does not
answer (a server restart, a network cut, another SQLite writer holding the lock for longer
than ``database.busy_timeout_s``) the thread retries every ``database.retry_interval_s``, and
the log says "database unavailable" once when it goes and "database available again" once
when it is back, each with how many writes are queued in memory and journaled.

Queue and journal. Up to ``database.memory_writes`` unapplied writes are held in memory. The
write beyond that bound spills the whole queue to a journal file (fsynced), and every later
write is appended to that file (each fsynced) until the thread has applied it to its end;
then the file is deleted and writes queue in memory again. At exit (``close``) the thread has
``database.exit_wait_s`` to catch up, and what is still in memory is journaled. So every write
of a long outage is on the disk, and a crash loses at most the fewer than ``memory_writes``
writes queued in memory (the builder's are in its raw files, which SQL can be rebuilt from).

Exactly once. Each writer (one per process start, ``<name>/<UTC start>-<pid>``) numbers its
writes 1, 2, 3...; the transaction that applies write n also raises the writer's row of
``applied_writes`` to n, and a write at or below the stored number is skipped. Since a
writer's writes are applied strictly in order, that one number records every write it has
applied: a write whose transaction committed but whose acknowledgement was lost (the
connection dropped at the commit) is skipped when it is retried, never applied twice.

Predecessors. A new writer first applies the journal files that earlier processes of its
name left for the same database (a crash, an exit while the database was away), oldest
first, then its own writes. One process of a name writes a data directory at a time. (So a
crashed run's SQL, rebuilt from its raw files, must be rebuilt after the crashed builder's
journal is applied, or the journaled increments would count twice.)

Journal layout, ``<data dir>/journal/<name>/``::

    <incarnation>.<first seq, 12 digits>.jnl   one file per spill, names sort in write order
    file    = b"NQJ1" + record...
    record  = u32 payload length + u32 CRC-32 of the payload (little-endian) + payload
    payload = UTF-8 JSON: first {"writer": id, "database": URL without password},
              then one per write {"seq": n, "kind": name, "data": {...}}

A record cut short or failing its CRC (the process died while appending it, before its
submit returned) ends the file: the bytes after it are ignored, with a warning.

A write that fails for another reason than the database being unavailable (a constraint, a
run that is not in the database) would fail again: it is logged with its content and
skipped, so the writes behind it are not held up.
"""

from __future__ import annotations

import json
import logging
import math
import os
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session

from daq.core.config import Database
from daq.core.errors import NudaqError
from daq.store.models import AppliedWrite, utcnow
from daq.store.session import upsert, writer

log = logging.getLogger(__name__)

JOURNAL_DIR = "journal"
"""The journals' directory inside the data directory."""
MAGIC = b"NQJ1"
_RECORD = struct.Struct("<II")
_SUFFIX = ".jnl"

Applier = Callable[[Session, dict], None]
"""Stores one write's data in the session's transaction (one per write kind)."""


@dataclass(frozen=True)
class Write:
    """One queued write: who wrote it, its place in that writer's order, what it stores."""

    writer: str
    seq: int
    kind: str
    data: dict


def unavailable(err: BaseException) -> bool:
    """Whether an error says the database cannot be used now (try again later), rather than
    that the write itself is wrong."""
    if isinstance(err, OperationalError | InterfaceError | PoolTimeoutError):
        return True
    return isinstance(err, DBAPIError) and err.connection_invalidated


def first_line(err: BaseException) -> str:
    """The first line of a database error, without SQLAlchemy's statement and link."""
    return str(getattr(err, "orig", None) or err).strip().splitlines()[0]


def claim(conn: Connection, writer_id: str, seq: int) -> bool:
    """Record in the caller's transaction that write ``seq`` of ``writer_id`` is stored;
    False if it (or a later one) already is."""
    table = AppliedWrite.__table__
    stmt = upsert(conn.dialect, table).values(writer=writer_id, seq=seq, applied_utc=utcnow())
    stmt = stmt.on_conflict_do_update(
        index_elements=["writer"],
        set_={"seq": stmt.excluded.seq, "applied_utc": stmt.excluded.applied_utc},
        where=table.c.seq < stmt.excluded.seq,
    )
    return conn.execute(stmt.execution_options(preserve_rowcount=True)).rowcount == 1


def _plain(value: object) -> object:
    """JSON for the numpy values a write's data may hold."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"a {type(value).__name__} cannot be journaled")


def _record(payload: dict) -> bytes:
    body = json.dumps(payload, separators=(",", ":"), default=_plain).encode()
    return _RECORD.pack(len(body), zlib.crc32(body)) + body


def _read_record(handle: BinaryIO) -> bytes | None:
    """The payload of the record at the handle's position; None if cut short or damaged."""
    head = handle.read(_RECORD.size)
    if len(head) < _RECORD.size:
        return None
    length, crc = _RECORD.unpack(head)
    body = handle.read(length)
    if len(body) < length or zlib.crc32(body) != crc:
        return None
    return body


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class JournalFile:
    """One journal file (layout in the module doc): writes appended, each fsynced, and read
    back in order by the writer's thread."""

    def __init__(
        self, path: Path, handle: BinaryIO, header: dict, offsets: list[int], end: int
    ) -> None:
        self.path = path
        self.writer = str(header["writer"])
        self.database = str(header["database"])
        self._handle = handle
        self._offsets = offsets
        self._end = end
        self._next = 0
        self._head: Write | None = None

    @classmethod
    def create(cls, path: Path, writer_id: str, database: str) -> JournalFile:
        """A new, empty journal of ``writer_id`` (its directory entry fsynced too)."""
        header = {"writer": writer_id, "database": database}
        handle = open(path, "x+b")  # noqa: SIM115 (open until deleted or closed)
        handle.write(MAGIC + _record(header))
        handle.flush()
        os.fsync(handle.fileno())
        _fsync_dir(path.parent)
        return cls(path, handle, header, [], handle.tell())

    @classmethod
    def open(cls, path: Path) -> JournalFile:
        """An existing journal, to be read (ValueError if it is not one)."""
        handle = open(path, "rb")  # noqa: SIM115 (open until deleted or closed)
        try:
            if handle.read(len(MAGIC)) != MAGIC:
                raise ValueError("not a nudaq journal")
            body = _read_record(handle)
            if body is None:
                raise ValueError("no readable header")
            header = json.loads(body)
            offsets = []
            while True:
                offset = handle.tell()
                if _read_record(handle) is None:
                    break
                offsets.append(offset)
            size = path.stat().st_size
            if offset < size:
                log.warning(
                    "%s: %d bytes from offset %d are cut short or damaged (a write that was"
                    " being journaled when its process died): ignored",
                    path,
                    size - offset,
                    offset,
                )
        except Exception:
            handle.close()
            raise
        return cls(path, handle, header, offsets, offset)

    @property
    def pending(self) -> int:
        """Writes not read yet."""
        return len(self._offsets) - self._next

    def append(self, write: Write, sync: bool = True) -> None:
        """Add a write at the end (and fsync it, unless ``sync`` is False)."""
        record = _record({"seq": write.seq, "kind": write.kind, "data": write.data})
        self._handle.seek(self._end)
        self._handle.write(record)
        self._offsets.append(self._end)
        self._end += len(record)
        if sync:
            self.sync()

    def sync(self) -> None:
        """Flush what was appended to the disk."""
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def head(self) -> Write | None:
        """The next write to apply, None when every write was read."""
        if self._head is None and self.pending:
            try:
                self._handle.seek(self._offsets[self._next])
                payload = json.loads(_read_record(self._handle))
                self._head = Write(self.writer, payload["seq"], payload["kind"], payload["data"])
            except (OSError, TypeError, ValueError, KeyError) as err:
                log.error(
                    "%s: record %d cannot be read back (%s): it and the %d after it are lost",
                    self.path,
                    self._next,
                    err,
                    self.pending - 1,
                )
                self._next = len(self._offsets)
        return self._head

    def advance(self) -> None:
        """The head is stored: move on to the next write."""
        self._next += 1
        self._head = None

    def close(self) -> None:
        """Close the file (it stays on the disk)."""
        self._handle.close()

    def delete(self) -> None:
        """Close and remove the file: every write in it is stored."""
        self.close()
        self.path.unlink(missing_ok=True)


class DurableWriter:
    """The queued SQL writes of one process and the thread that applies them (module doc).

    ``appliers`` maps each write kind the process submits to the function storing it.
    """

    def __init__(
        self,
        engine: Engine,
        data_dir: Path,
        name: str,
        appliers: Mapping[str, Applier],
        settings: Database,
    ) -> None:
        self.engine = engine
        self.name = name
        self.appliers = dict(appliers)
        self.settings = settings
        self.directory = Path(data_dir) / JOURNAL_DIR / name
        self.incarnation = f"{datetime.now(UTC):%Y%m%dT%H%M%S.%fZ}-{os.getpid()}"
        self.writer_id = f"{name}/{self.incarnation}"
        self.database = engine.url.render_as_string(hide_password=True)
        self._cond = threading.Condition()
        self._memory: deque[Write] = deque()
        self._spill: JournalFile | None = None
        self._inherited: deque[JournalFile] = deque(self._predecessors())
        self._seq = 0
        self._available = True
        self._down_since = 0.0
        self._closing = False
        self._deadline = math.inf
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"sql-{name}", daemon=True)
        self._thread.start()

    # -- the caller's side ---------------------------------------------------------------------
    def submit(self, kind: str, data: dict) -> int:
        """Queue a write (never waits for the database; after ``close`` it is journaled at
        once); its sequence number."""
        if kind not in self.appliers:
            raise ValueError(f"{self.name}: no applier for writes of kind {kind!r}")
        with self._cond:
            self._seq += 1
            write = Write(self.writer_id, self._seq, kind, data)
            held = self._spill is None and not self._stopped
            if held and len(self._memory) < self.settings.memory_writes:
                self._memory.append(write)
            else:
                if held:
                    log.warning(
                        "more than database.memory_writes = %d writes queued: journaling"
                        " them in %s",
                        self.settings.memory_writes,
                        self.directory,
                    )
                self._journal(write)
            self._cond.notify_all()
        return write.seq

    def status(self) -> dict:
        """Whether the database answered at the last attempt; writes queued and journaled."""
        with self._cond:
            return {
                "available": self._available,
                "queued": len(self._memory),
                "journaled": self._journaled(),
            }

    @property
    def caught_up(self) -> bool:
        """The database answered at the last attempt and every write is stored."""
        with self._cond:
            return self._available and not self._pending()

    def wait(self, timeout_s: float) -> bool:
        """Wait until every write is stored, at most timeout_s (s); True if it is."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._pending():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        """Give the thread ``database.exit_wait_s`` to store what is queued, then journal what
        is left in memory and stop (the next process of this name applies the journal)."""
        wait_s = self.settings.exit_wait_s
        with self._cond:
            self._closing = True
            self._deadline = time.monotonic() + wait_s
            self._cond.notify_all()
        self._thread.join(wait_s + 0.5)
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            if self._memory:
                self._journal()
            left = self._journaled()
            for journal in (*self._inherited, *([self._spill] if self._spill else [])):
                journal.close()
        if left:
            log.warning(
                "%d writes not stored yet: journaled in %s; the next start of %s stores them",
                left,
                self.directory,
                self.name,
            )

    # -- queue and journal (under the lock) ----------------------------------------------------
    def _journal(self, write: Write | None = None) -> None:
        """Append ``write`` to the journal; if it is the first there, move the memory queue
        into the journal first (it holds earlier writes)."""
        if self._spill is None:
            first = self._memory[0] if self._memory else write
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{self.incarnation}.{first.seq:012d}{_SUFFIX}"
            self._spill = JournalFile.create(path, self.writer_id, self.database)
            for queued in self._memory:
                self._spill.append(queued, sync=False)
            self._memory.clear()
        if write is not None:
            self._spill.append(write, sync=False)
        self._spill.sync()

    def _journaled(self) -> int:
        spilled = self._spill.pending if self._spill is not None else 0
        return spilled + sum(j.pending for j in self._inherited)

    def _pending(self) -> bool:
        return bool(self._memory) or self._journaled() > 0

    def _predecessors(self) -> list[JournalFile]:
        """The journals earlier processes of this name left for this database, oldest first."""
        found = []
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            try:
                journal = JournalFile.open(path)
            except (OSError, ValueError) as err:
                log.error("%s is not a readable journal (%s): left alone", path, err)
                continue
            if journal.database != self.database:
                log.warning(
                    "%s holds writes for %s, not for %s: left alone",
                    path,
                    journal.database,
                    self.database,
                )
                journal.close()
                continue
            found.append(journal)
        if found:
            log.warning(
                "%d writes journaled by an earlier %s found in %s: storing them first",
                sum(j.pending for j in found),
                self.name,
                self.directory,
            )
        return found

    # -- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        while (write := self._next()) is not None:
            if not self._store(write):
                return
            self._done(write)

    def _next(self) -> Write | None:
        """The oldest write not stored yet (predecessors' journals, then the memory queue, then
        the journal: the queue never holds writes later than the journal's); waits for one;
        None once stopping."""
        with self._cond:
            while not self._stopped:
                if self._inherited:
                    if (write := self._inherited[0].head()) is not None:
                        return write
                    self._inherited.popleft().delete()
                elif self._memory:
                    return self._memory[0]
                elif self._spill is not None:
                    if (write := self._spill.head()) is not None:
                        return write
                    self._spill.delete()
                    self._spill = None
                elif self._closing:
                    return None
                else:
                    self._cond.wait()
            return None

    def _done(self, write: Write) -> None:
        """``write``, the head of its queue, is stored: take it off (a queued write may have
        moved from memory to the journal meanwhile)."""
        with self._cond:
            if self._stopped:
                return
            if self._inherited:
                self._inherited[0].advance()
            elif self._memory and self._memory[0] is write:
                self._memory.popleft()
            elif self._spill is not None and (head := self._spill.head()) is not None:
                if head.seq == write.seq:
                    self._spill.advance()
            self._cond.notify_all()

    def _store(self, write: Write) -> bool:
        """Apply a write, retrying while the database is unavailable; False if the writer
        stopped (or its exit wait ran out) before the write was stored."""
        while True:
            try:
                self._apply(write)
            except Exception as err:  # noqa: BLE001 (a wrong write must not stop the writes)
                if not unavailable(err):
                    self._skip(write, err)
                    return True
                self._went_away(err)
                if not self._pause():
                    return False
                continue
            self._came_back()
            return True

    def _apply(self, write: Write) -> None:
        """One transaction: claim the write, store it (or nothing if it is stored already)."""
        applier = self.appliers.get(write.kind)
        if applier is None:
            raise ValueError(f"no applier for writes of kind {write.kind!r}")
        engine = writer(self.engine, self.settings.busy_timeout_s)
        with Session(engine, expire_on_commit=False) as session, session.begin():
            if not claim(session.connection(), write.writer, write.seq):
                log.info(
                    "write %d of %s is stored already: not applied again", write.seq, write.writer
                )
                return
            applier(session, write.data)

    def _skip(self, write: Write, err: Exception) -> None:
        content = json.dumps(write.data, default=_plain)
        log.error(
            "write %d of %s (%s) cannot be stored and is skipped: %s; its content: %s",
            write.seq,
            write.writer,
            write.kind,
            err,
            content,
            exc_info=not isinstance(err, SQLAlchemyError | NudaqError | ValueError),
        )

    def _pause(self) -> bool:
        """Wait ``database.retry_interval_s`` before the next attempt; False if the writer
        stops meanwhile or its exit wait has run out."""
        until = time.monotonic() + self.settings.retry_interval_s
        with self._cond:
            while not self._stopped:
                left = min(until, self._deadline) - time.monotonic()
                if left <= 0:
                    return time.monotonic() < self._deadline
                self._cond.wait(left)
            return False

    def _went_away(self, err: Exception) -> None:
        with self._cond:
            if not self._available:
                return
            self._available = False
            self._down_since = time.monotonic()
            queued, journaled = len(self._memory), self._journaled()
        log.warning(
            "database unavailable (%s): %d writes queued in memory, %d journaled;"
            " retrying every %g s",
            first_line(err),
            queued,
            journaled,
            self.settings.retry_interval_s,
        )

    def _came_back(self) -> None:
        with self._cond:
            if self._available:
                return
            self._available = True
            queued, journaled = len(self._memory), self._journaled()
            down_s = time.monotonic() - self._down_since
        log.warning(
            "database available again after %.1f s: %d writes queued in memory, %d journaled,"
            " being stored",
            down_s,
            queued,
            journaled,
        )
