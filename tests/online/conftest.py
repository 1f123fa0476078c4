"""Fixtures of the online tests: a short data directory, a real run control in a thread, and
local SMTP and HTTP servers that record the alarm notifications they receive."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.servers import SmtpServer, WebhookServer, serving_run_control


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
    with serving_run_control(db_engine, data_dir) as rc:
        yield rc


@pytest.fixture
def webhook_server():
    """A local HTTP server recording the webhook's POSTs."""
    server = WebhookServer()
    yield server
    server.close()


@pytest.fixture
def smtp_server():
    """A local SMTP server recording the messages it is sent."""
    pytest.importorskip("aiosmtpd", reason="aiosmtpd (the test extra) is not installed")
    server = SmtpServer()
    yield server
    server.close()
