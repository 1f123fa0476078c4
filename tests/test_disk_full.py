"""A full disk through real processes: the data directory on a small tmpfs the test mounts.

Below ``alarms.disk_critical_GB`` free the builder stops the run while its files can still be
closed: raw files closed and linked, SQL committed and equal to a replay of them, a critical
alarm, the reason in the run's record and the logbook, and the system stays up. With no floor
the disk fills up: the write that fails (ENOSPC) stops the run the same way, the builder does
not die, SQL (on another disk) is committed, and ``nudaq recover`` closes the raw files once
there is room again.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from daq.core.config import Config
from daq.formats.rawfile import RawReader
from tests.processes import kill_processes_of
from tests.test_replay_system import stored
from tests.test_supervision import nudaq, of_run, replayed, service, sql, up, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.faults]

SPEED = 20.0
"""About 3.5 MB/s of raw data with the default rates."""


@pytest.fixture
def small_disk():
    """A 28 MB tmpfs mounted for the test (skipped where mounting is not allowed)."""
    path = Path(tempfile.mkdtemp(prefix="nqf", dir="/tmp"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=28m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        path.rmdir()
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        kill_processes_of(path)
        time.sleep(0.5)
        subprocess.run(["umount", "-l", str(path)], check=False)
        path.rmdir()


def builder_of(system: subprocess.Popen) -> psutil.Process | None:
    try:
        return service(system, "builder")
    except AssertionError:
        return None


def stopped_run(db: Path, system: subprocess.Popen) -> tuple:
    """Run 1's state and error once run control has ended it."""

    def ended():
        rows = sql(db.parent, "SELECT state, error, raw_file FROM runs WHERE number = 1")
        return rows and rows[0][0] != "running" and rows[0]

    return wait_for(ended, 120, "run 1 stopped by the builder", system)


def test_below_the_critical_floor_the_run_stops_with_its_files_closed(small_disk, tmp_path):
    data_dir = small_disk / "data"
    config = Config()
    config.alarms.disk_critical_GB = 0.015
    config.alarms.disk_low_GB = 0.025
    system = up(data_dir, config, speed=SPEED)
    try:
        builder = wait_for(lambda: builder_of(system), 60, "the builder", system)
        state, error, raw_file = stopped_run(data_dir / "nudaq.sqlite", system)
        free_GB = shutil.disk_usage(small_disk).free / 1e9
        refused = nudaq("run", "start", "--data-dir", str(data_dir))
        alarms = wait_for(
            lambda: sql(data_dir, "SELECT severity FROM alarms WHERE name = 'disk_critical'"),
            30,
            "the critical alarm",
            system,
        )
        assert system.poll() is None and builder.is_running()  # the system stays up
    finally:
        system.send_signal(signal.SIGINT)
        system.wait(60)
    assert state == "ended" and "below alarms.disk_critical_GB (0.015 GB)" in error, error
    assert 0.005 < free_GB < 0.015 + 0.01  # stopped near the floor, before the disk filled
    assert RawReader(raw_file).damage is None
    assert alarms == [("critical",)]
    assert refused.returncode == 2 and "alarms.disk_critical_GB" in refused.stderr
    logbook = [t for (t,) in sql(data_dir, "SELECT text FROM logbook WHERE run_number = 1")]
    assert any("builder stopped run 1: free disk space" in t for t in logbook), logbook
    live = of_run(stored(data_dir / "nudaq.sqlite"), 1)
    assert live["exposures"] and live == replayed(data_dir, 1, tmp_path)


def test_a_disk_that_fills_up_stops_the_run_and_recovery_closes_it_later(small_disk, tmp_path):
    data_dir = small_disk / "data"
    data_dir.mkdir()
    db = tmp_path / "nudaq.sqlite"  # SQL on another disk: it is committed all the same
    ballast = small_disk / "ballast"
    ballast.write_bytes(os.urandom(4 << 20))  # what the shifter frees afterwards
    config = Config()
    config.alarms.disk_critical_GB = 0.0  # no floor: the disk fills up
    config.alarms.disk_low_GB = 0.01
    system = up(data_dir, config, "--db", f"sqlite:///{db}", speed=SPEED)
    try:
        builder = wait_for(lambda: builder_of(system), 60, "the builder", system)
        state, error, _ = stopped_run(db, system)
        assert builder.is_running() and system.poll() is None  # nothing crashed
    finally:
        system.send_signal(signal.SIGINT)
        system.wait(60)
    assert state == "ended" and "No space left on device" in error, error
    summary_rows = sql(tmp_path, "SELECT events_all FROM exposures")
    assert summary_rows and sum(n for (n,) in summary_rows) > 0  # SQL committed

    ballast.unlink()
    recovered = nudaq("recover", "1", "--db", f"sqlite:///{db}", "--data-dir", str(data_dir))
    assert recovered.returncode == 0, recovered.stderr
    ((state, raw_file),) = sql(tmp_path, "SELECT state, raw_file FROM runs WHERE number = 1")
    assert state == "recovered" and RawReader(raw_file).damage is None
    live = of_run(stored(db), 1)
    assert live == replayed(data_dir, 1, tmp_path)
