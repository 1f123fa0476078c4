"""A live ``nudaq up --sim`` writes analysis-history rows at the configured interval.

The whole system through real processes (simulated hardware at 20x speed); the monitor calls
online.analysis.live.record_live_analysis every ``analysis.interval_s`` (2 s here, from a TOML file)
while the run is going. The monitor looks once per second, so rows come 2 to 3 s apart.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from daq.store.models import AnalysisHistory
from daq.store.session import make_engine, session_scope
from tests.processes import start_up, stop_up

pytestmark = pytest.mark.slow

INTERVAL_S = 2.0
ROWS = 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def data_dir():
    """A short data directory (ipc socket paths must stay under ~100 characters)."""
    path = Path(tempfile.mkdtemp(prefix="nqa", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def history(engine) -> list[AnalysisHistory]:
    with session_scope(engine, readonly=True) as session:
        try:
            return list(session.scalars(select(AnalysisHistory).order_by(AnalysisHistory.id)))
        except OperationalError:  # the database or its tables do not exist yet
            return []


def test_live_analysis_rows_at_the_configured_interval(data_dir):
    config = data_dir / "live.toml"
    config.write_text(f"[analysis]\ninterval_s = {INTERVAL_S}\n\n[web]\nport = {free_port()}\n")
    process = start_up(
        data_dir, "--speed", "20", "--config", str(config), stdout=subprocess.DEVNULL
    )
    engine = make_engine(f"sqlite:///{data_dir / 'nudaq.sqlite'}")
    try:
        deadline = time.monotonic() + 120
        rows = []
        while len(rows) < ROWS and time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.5)
            rows = history(engine)
    finally:
        stop_up(process)
        engine.dispose()
    assert len(rows) >= ROWS, "too few analysis_history rows within 120 s"
    stamps = np.array([r.time_utc.timestamp() for r in rows])
    gaps = np.diff(stamps)
    assert np.all(gaps > INTERVAL_S - 0.1), gaps
    assert np.all(gaps < INTERVAL_S + 2.0), gaps
    assert np.median(gaps) < INTERVAL_S + 1.2, gaps
    assert {r.run_number for r in rows} == {1}
    # The exposure is live-time corrected by the random triggers seen so far, which
    # fluctuate; divided by that live fraction it is the DAQ's, which only grows.
    # Rows before the first random trigger have no live fraction and no exposure yet.
    assert all(r.exposure_on_kg_day == 0 for r in rows if r.live_fraction is None)
    measured = [r for r in rows if r.live_fraction is not None]
    exposures = np.array([r.exposure_on_kg_day for r in measured])
    daq_exposures = exposures / np.array([r.live_fraction for r in measured])
    assert exposures[-1] > 0 and np.all(np.diff(daq_exposures) >= -1e-12 * daq_exposures[1:])
    assert rows[-1].live_fraction is not None and rows[-1].accidental_ac is not None
