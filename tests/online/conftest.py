"""Fixtures of the online tests: a short data directory and a real run control in a thread."""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from daq.control.runcontrol import RunControl
from daq.core.config import Config


@pytest.fixture
def data_dir():
    """A short data directory (ipc socket paths are limited to ~100 characters)."""
    path = Path(tempfile.mkdtemp(prefix="nqw", dir="/tmp"))
    (path / "sockets").mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def run_control(db_engine, data_dir):
    """A real run control with no DAQ processes, serving requests in a thread."""
    config = Config()
    rc = RunControl(config, data_dir, db_engine)
    rc.participants = ()
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            rc.pump(20)
            rc.serve_request()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield rc
    stop.set()
    thread.join(5)
    rc.close()
