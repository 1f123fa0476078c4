"""The DAQ rides through database outages: ``nudaq up --sim`` against a database that goes away.

PostgreSQL: the test runs its own cluster (initdb in a temporary directory, as the
``postgres`` user when run as root, on a free port), stops it during a run for longer than
every timeout on the writes' path, starts it, restarts it once more briefly, then stops the
run. SQLite: another connection holds the write lock (BEGIN IMMEDIATE) for longer than the
busy timeout while the run goes on, and the run is stopped, and a start refused, while it
still does.

After each: nothing crashed (every process was alive until the stop, no traceback in any
log), the outage was detected and reported ("database unavailable" and "available again" in
the logs), the run is ended and linked to its raw file in SQL, SQL equals a replay of the raw
file (spectra, exposures, stream stats, reactor intervals and coverage gaps, bit for bit),
every slow-control reading of the run is stored once, and every pulse the readouts sent is
in the raw file or counted lost; under the SQLite lock none was lost at all (the builder
never waited for the database).

The outage lasts OUTAGE_S beyond the longest timeout configured on the path (CI: a few
seconds); ``NUDAQ_TEST_OUTAGE_S=60`` gives the 60 s outage the DAQ is required to ride
through.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from sqlalchemy import create_engine, text

from daq.core.config import Config
from daq.core.records import Stream
from daq.drivers.slowcontrol_device import QUANTITIES
from daq.formats.rawfile import RawReader
from tests import test_stop
from tests.daq.test_durable import locked
from tests.processes import NUDAQ
from tests.test_replay_system import stored_at
from tests.test_stop import (
    RUN_S,
    SPEED,
    assert_nothing_lost,
    balance,
    base_config,
    filling_config,
    start,
    stopped,
)

pytestmark = [pytest.mark.slow, pytest.mark.faults]

data_dir = test_stop.data_dir

OUTAGE_MARGIN_S = 1.0
"""How much longer than the longest timeout on the path an outage lasts (s)."""


def outage_config(config: Config) -> Config:
    """Short timeouts, so that a few seconds exceed them all, and a memory bound that the
    slow-control readings of an outage (10 per second at SPEED) overflow into the journal."""
    config.builder.commit_interval_s = 1.0
    config.database.busy_timeout_s = 2.0
    config.database.retry_interval_s = 0.2
    config.database.memory_writes = 4
    return config


def outage_s(config: Config) -> float:
    """An outage longer than every timeout on the path of the writes (s): a write comes at
    the latest one builder commit interval (or slow-control poll, or retry interval) into
    it, and fails after the SQLite busy timeout."""
    cadence = max(
        config.builder.commit_interval_s,
        config.slowcontrol.poll_interval_s / SPEED,
        config.database.retry_interval_s,
    )
    longest = config.database.busy_timeout_s + cadence
    return float(os.environ.get("NUDAQ_TEST_OUTAGE_S", longest + OUTAGE_MARGIN_S))


def gone(children: list[psutil.Process]) -> list[int]:
    """The processes of nudaq up that are gone (none, when nothing crashed)."""
    gone = []
    for p in children:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                continue
        except psutil.NoSuchProcess:
            pass
        gone.append(p.pid)
    return gone


def tracebacks(data_dir: Path) -> dict[str, int]:
    """Tracebacks per log file (and nudaq up's stderr), where there are any."""
    files = [*sorted((data_dir / "logs").glob("*.log")), data_dir / "up.stderr"]
    counts = {f.name: f.read_text().count("Traceback") for f in files}
    return {name: n for name, n in counts.items() if n}


def reported(data_dir: Path, process: str) -> bool:
    """The process logged the outage when it began and when it ended (printed)."""
    lines = (data_dir / "logs" / f"{process}.log").read_text().splitlines()
    said = [line for line in lines if "daq.store.durable" in line]
    print(process, *said, sep="\n  ")
    return any("database unavailable" in s for s in said) and any(
        "database available again" in s for s in said
    )


def run_row(url: str) -> tuple[str, str | None]:
    """Run 1's state and raw file in SQL."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT state, raw_file FROM runs WHERE number = 1")).one()
            return tuple(row)
    finally:
        engine.dispose()


def readings_stored(url: str, raw_file: Path) -> None:
    """Every slow-control reading in SQL is stored once (a row per quantity), and every
    reading sent as a REACTOR pulse during the run (the raw file) is among them."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT clock_ns, count(*) FROM slow_control GROUP BY clock_ns")
            ).all()
    finally:
        engine.dispose()
    stored = dict(rows)
    assert set(stored.values()) == {len(QUANTITIES)}, "a reading stored twice or in part"
    sent = {
        int(t)
        for batch in RawReader(raw_file).iter_batches()
        if batch.stream == Stream.REACTOR
        for t in batch.pulses["t_ns"]
    }
    assert sent and not sent - stored.keys(), sorted(sent - stored.keys())[:10]


def replayed(raw_file: Path, work: Path) -> dict[str, list]:
    """What a replay of the raw file stores in a fresh database."""
    work.mkdir(exist_ok=True)
    db = work / "replay.sqlite"
    out = subprocess.run(
        [*NUDAQ, "replay", str(raw_file), "--db", f"sqlite:///{db}", "--data-dir", str(work)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return stored_at(f"sqlite:///{db}")


def assert_rode_through(data_dir: Path, url: str, up, children) -> dict[str, dict]:
    """Stop nudaq up (Ctrl-C), then everything the module doc promises; the balance."""
    assert not gone(children), (data_dir / "up.stderr").read_text()[-3000:]
    up.send_signal(signal.SIGINT)
    code, err, left = stopped(data_dir, up, children)
    assert code == 0 and not left, (code, err, left)
    assert not tracebacks(data_dir), tracebacks(data_dir)
    for process in ("builder", "slowcontrol"):
        assert reported(data_dir, process), process
    state, raw_file = run_row(url)
    assert state == "ended" and raw_file == str(data_dir / "raw" / "run000001.pulses.arrow")
    assert stored_at(url) == replayed(Path(raw_file), data_dir / "replay")
    readings_stored(url, Path(raw_file))
    rows = balance(data_dir)
    assert_nothing_lost(rows)
    assert not list((data_dir / "journal").glob("*/*.jnl")), "writes left in a journal"
    return rows


# -- PostgreSQL --------------------------------------------------------------------------------


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own, which it stops and starts at will."""

    def __init__(self, directory: Path) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            pytest.skip("no PostgreSQL server in /usr/lib/postgresql/*/bin")
        self.bin = Path(bins[-1])
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # the server refuses to run as root
            if shutil.which("runuser") is None:
                pytest.skip("running as root without runuser: cannot start PostgreSQL")
            try:
                shutil.chown(directory, "postgres")
            except (LookupError, OSError) as err:
                pytest.skip(f"no postgres user to run the PostgreSQL server as: {err}")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.directory = directory
        self.data = directory / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        out = self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-N")
        if out.returncode != 0:
            pytest.skip(f"initdb failed: {out.stderr.strip()[-300:]}")

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.as_user, str(self.bin / tool), *args], capture_output=True, text=True
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        log = str(self.directory / "server.log")
        out = self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        assert out.returncode == 0, out.stderr

    def stop(self, mode: str = "fast") -> None:
        out = self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        assert out.returncode == 0, out.stderr


@pytest.fixture
def postgres():
    directory = Path(tempfile.mkdtemp(prefix="nqpg", dir="/tmp"))
    server = None
    try:
        server = PrivatePostgres(directory)
        server.start()
        yield server
    finally:
        if server is not None:
            with contextlib.suppress(AssertionError):
                server.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.postgres
def test_a_postgresql_restart_during_a_run(data_dir, postgres):
    config = outage_config(base_config())
    up, children = start(data_dir, config, "--db", postgres.url)
    time.sleep(RUN_S)
    postgres.stop()
    time.sleep(outage_s(config))
    postgres.start()
    time.sleep(RUN_S)
    postgres.stop()  # once more, briefly
    time.sleep(0.3)
    postgres.start()
    time.sleep(RUN_S)
    assert_rode_through(data_dir, postgres.url, up, children)


# -- SQLite ------------------------------------------------------------------------------------


def nudaq(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*NUDAQ, *args, "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=60
    )


def test_an_sqlite_lock_held_past_the_busy_timeout_during_a_run(data_dir):
    """The AC readout's queues hold about a second of its pulses (test_stop.filling_config):
    a builder that waited for the lock for the busy timeout would make it drop some. Also:
    the run is stopped while the lock is still held (the stop completes, its SQL is stored
    when the lock is gone), and a start meanwhile is refused in one line."""
    config = outage_config(filling_config())
    url = f"sqlite:///{data_dir / 'nudaq.sqlite'}"
    up, children = start(data_dir, config)
    time.sleep(RUN_S)
    with locked(data_dir / "nudaq.sqlite"):
        time.sleep(outage_s(config))
        stop = nudaq(data_dir, "run", "stop")
        assert stop.returncode == 0 and "run 1 stopped" in stop.stdout, stop.stderr
        refused = nudaq(data_dir, "run", "start")
        assert refused.returncode != 0 and refused.stderr.count("\n") == 1, refused.stderr
        assert "cannot start a run: the database is unavailable" in refused.stderr
        assert run_row(url) == ("running", None), "stored while the lock was held"
    deadline = time.monotonic() + 30
    while run_row(url)[0] != "ended":
        assert time.monotonic() < deadline, "the stop was not stored within 30 s of the lock"
        time.sleep(0.2)
    rows = assert_rode_through(data_dir, url, up, children)
    for name in ("hpge", "acv", "crv"):
        row = rows[name]
        assert row["dropped"] == row["not_sent"] == row["missing_batches"] == 0, (name, row)
