"""Queued SQL writes (daq.store.durable): in order, exactly once, through outages and crashes.

Outages are real: another SQLite connection holds the write lock (BEGIN IMMEDIATE) for longer
than the writer's busy timeout, or the commit's acknowledgement is lost after the database
committed. The crash is real: the first writer is a process killed with SIGKILL.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from daq.core.config import Config, Database
from daq.drivers.slowcontrol_device import QUANTITIES, Reading
from daq.processes.slowcontrol import READING, reading_write, record
from daq.store.durable import JOURNAL_DIR, DurableWriter, JournalFile
from daq.store.filler import SPECTRUM, SpectrumFiller, apply_increment
from daq.store.models import AppliedWrite, SlowControlReading
from daq.store.runs import create_run
from daq.store.session import make_engine, session_scope, upgrade_database
from tests.online.test_filler import N_BINS, expected_sums, random_update, stored

pytestmark = pytest.mark.faults

FAST = Database(busy_timeout_s=0.2, retry_interval_s=0.05, memory_writes=5, exit_wait_s=5.0)
"""Timeouts short enough that a lock held for a second is an outage."""


@contextmanager
def locked(db: Path):
    """Another writer holds SQLite's write lock (BEGIN IMMEDIATE) inside."""
    con = sqlite3.connect(db, isolation_level=None, timeout=30)
    con.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        con.execute("ROLLBACK")
        con.close()


def reading(t_ns: int) -> Reading:
    return Reading(t_ns=t_ns, power_MW=2900.0, hv_V=3000.0, ln2_pct=80.0, temp_C=20.0 + t_ns)


def stored_readings(engine) -> list[tuple[int, int]]:
    """(clock_ns, rows) of every stored reading, in the order they were stored."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(SlowControlReading.clock_ns, func.count())
            .group_by(SlowControlReading.clock_ns)
            .order_by(func.min(SlowControlReading.id))
        ).all()
    return [tuple(r) for r in rows]


@pytest.fixture
def sqlite_db(tmp_path):
    db = tmp_path / "nudaq.sqlite"
    engine = make_engine(f"sqlite:///{db}")
    upgrade_database(engine)
    yield db, engine
    engine.dispose()


def test_writes_wait_out_a_lock_in_order_and_say_so_once(sqlite_db, tmp_path, caplog):
    """Readings submitted while another writer holds the lock for many busy timeouts are
    stored in their order once it is released; the outage is logged once each way, with the
    queue; more writes than the memory bound go to the journal, which is gone afterwards."""
    db, engine = sqlite_db
    caplog.set_level(logging.INFO, logger="daq.store.durable")
    writes = DurableWriter(engine, tmp_path, "slowcontrol", {READING: record}, FAST)
    try:
        writes.submit(READING, reading_write(reading(0)))
        assert writes.wait(10)
        with locked(db):
            for t in range(1, 9):
                writes.submit(READING, reading_write(reading(t)))
                time.sleep(0.1)
            assert stored_readings(engine) == [(0, len(QUANTITIES))]
            assert not writes.caught_up
            status = writes.status()
            assert status == {"available": False, "queued": 0, "journaled": 8}, status
            assert list((tmp_path / JOURNAL_DIR / "slowcontrol").glob("*.jnl"))
        assert writes.wait(10)
        assert writes.caught_up
    finally:
        writes.close()
    assert stored_readings(engine) == [(t, len(QUANTITIES)) for t in range(9)]
    assert not list((tmp_path / JOURNAL_DIR / "slowcontrol").iterdir())
    down = [r.getMessage() for r in caplog.records if "database unavailable" in r.getMessage()]
    back = [r.getMessage() for r in caplog.records if "available again" in r.getMessage()]
    assert len(down) == 1 and "database is locked" in down[0], down
    assert len(back) == 1 and "8 journaled" in back[0], back
    with engine.connect() as conn:
        assert conn.scalar(select(AppliedWrite.seq)) == 9


def test_a_commit_whose_acknowledgement_is_lost_is_not_applied_twice(db_engine, tmp_path, caplog):
    """The database commits the second increment, then the connection fails before the
    writer hears it: the retry finds the write recorded and skips it, so the spectra equal
    the sum of the increments, not more."""
    with session_scope(db_engine) as session:
        create_run(session, 1, Config())
    caplog.set_level(logging.INFO, logger="daq.store.durable")
    dialect = db_engine.dialect
    commit = dialect.do_commit
    commits = []

    def commit_then_lose_the_answer(dbapi_connection):
        commit(dbapi_connection)
        commits.append(1)
        if len(commits) == 2:
            raise dialect.loaded_dbapi.OperationalError("server closed the connection")

    dialect.do_commit = commit_then_lose_the_answer
    writes = DurableWriter(db_engine, tmp_path, "builder", {SPECTRUM: apply_increment}, FAST)
    try:
        filler = SpectrumFiller(db_engine, 1, "", N_BINS, writes)
        rng = np.random.default_rng(11)
        updates = [random_update(rng) for _ in range(3)]
        for update in updates:
            filler.add(update)
            filler.commit()
        assert writes.wait(10)
    finally:
        writes.close()
        del dialect.do_commit
    assert len(commits) == 4, "three writes, and the retry of the lost one, which stores nothing"
    hist, exposures, _, streams = stored(db_engine, 1, "")
    want_hist, want_exposures, want_streams = expected_sums(updates)
    np.testing.assert_array_equal(hist, want_hist)
    assert (exposures, streams) == (want_exposures, want_streams)
    skipped = [r.getMessage() for r in caplog.records if "stored already" in r.getMessage()]
    assert skipped == [f"write 2 of {writes.writer_id} is stored already: not applied again"]


CHILD = textwrap.dedent(
    """
    import sys, time
    from daq.core.config import Config, Database
    from daq.drivers.slowcontrol_device import Reading
    from daq.processes.slowcontrol import READING, reading_write, record
    from daq.store.durable import DurableWriter
    from daq.store.session import make_engine

    def slowly(session, data):
        time.sleep(0.2)
        record(session, data)

    data_dir, url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    settings = Database(busy_timeout_s=0.1, retry_interval_s=0.05, memory_writes=5)
    writes = DurableWriter(make_engine(url), data_dir, "slowcontrol", {READING: slowly}, settings)
    for t in range(n):
        writes.submit(READING, reading_write(
            Reading(t_ns=t, power_MW=2900.0, hv_V=3000.0, ln2_pct=80.0, temp_C=20.0 + t)))
    print("submitted", flush=True)
    time.sleep(600)
    """
)


def test_a_killed_writers_journal_is_applied_once_by_the_next(sqlite_db, tmp_path, caplog):
    """A writer process queues 20 readings while the database is locked (the memory bound is
    5: all go to its journal), applies some once the lock is gone, and is killed (SIGKILL)
    in the middle. A new writer of the same name finds the journal, whose last record was
    being appended when the process died, skips what is stored and stores the rest: every
    reading once, in order, and the journal is gone."""
    db, engine = sqlite_db
    n = 20
    caplog.set_level(logging.INFO, logger="daq.store.durable")
    with locked(db):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), f"sqlite:///{db}", str(n)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout.readline().strip() == "submitted"
            (path,) = (tmp_path / JOURNAL_DIR / "slowcontrol").glob("*.jnl")
            journal = JournalFile.open(path)
            assert journal.pending == n and journal.head().seq == 1
            journal.close()
        except BaseException:
            child.kill()
            raise
    deadline = time.monotonic() + 20
    while len(stored_readings(engine)) < 3:
        assert time.monotonic() < deadline, "the writer stored nothing after the lock"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    applied_before = len(stored_readings(engine))
    assert 3 <= applied_before < n
    with path.open("ab") as torn:  # a record cut short: the process died appending it
        torn.write(b"\x40\x00\x00\x00\x12\x34")
    writes = DurableWriter(engine, tmp_path, "slowcontrol", {READING: record}, FAST)
    try:
        assert writes.wait(20)
    finally:
        writes.close()
    assert stored_readings(engine) == [(t, len(QUANTITIES)) for t in range(n)]
    assert not path.exists()
    messages = [r.getMessage() for r in caplog.records]
    assert any("cut short or damaged" in m for m in messages)
    assert any(f"{n} writes journaled by an earlier slowcontrol" in m for m in messages)
    skipped = [m for m in messages if "stored already" in m]
    assert len(skipped) == applied_before, skipped
