"""The commands answer at once, in one line, when there is no system or no data directory.

Real ``nudaq`` processes. The time bounds are loose functional checks: a command that waits
for run control's reply timeout (10 s for ``status``, 90 s for ``run``) fails them by far.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from daq.commands.options import listening
from tests.processes import NUDAQ

ANSWER_BOUND_S = 5.0
"""Far below the request timeouts, far above the probe (about a second at worst)."""


@pytest.fixture
def data_dir():
    path = Path(tempfile.mkdtemp(prefix="nqc", dir="/tmp"))
    (path / "sockets").mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def nudaq(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    out = subprocess.run([*NUDAQ, *args], capture_output=True, text=True, timeout=120)
    return out, time.monotonic() - started


def one_line(out: subprocess.CompletedProcess) -> str:
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


@pytest.mark.parametrize("command", [("status",), ("run", "stop"), ("run", "start")])
def test_no_system_running_is_one_line_at_once(data_dir, command):
    out, took = nudaq(*command, "--data-dir", str(data_dir))
    assert out.returncode != 0 and out.stdout == ""
    line = one_line(out)
    assert line.startswith(f"nudaq {command[0]}: error: no system running: nothing listens at")
    assert str(data_dir / "sockets" / "run-control") in line
    assert took < ANSWER_BOUND_S


def test_a_left_over_socket_file_is_no_system(data_dir):
    """A socket file that nobody listens on (a crashed system's) is told apart at once."""
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(data_dir / "sockets" / "run-control"))
    leftover.close()
    out, took = nudaq("status", "--data-dir", str(data_dir))
    assert out.returncode != 0 and "no system running" in one_line(out)
    assert took < ANSWER_BOUND_S


@pytest.mark.parametrize(
    "command",
    [
        ("status",),
        ("run", "stop"),
        ("web",),
        ("spectra",),
        ("analysis",),
        ("replay", "1"),
    ],
)
def test_a_missing_data_directory_is_named_and_not_created(tmp_path, command):
    missing = tmp_path / "typo"
    out, _ = nudaq(*command, "--data-dir", str(missing))
    assert out.returncode != 0
    assert one_line(out) == (
        f"nudaq {command[0]}: error: data directory {missing} does not exist "
        "(`nudaq up` creates it; give --data-dir or $NUDAQ_DATA_DIR)"
    )
    assert not missing.exists()


def test_probe_tells_listening_endpoints(tmp_path):
    path = tmp_path / "rc"
    assert not listening(f"ipc://{path}")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    tcp = socket.create_server(("127.0.0.1", 0))
    port = tcp.getsockname()[1]
    try:
        assert listening(f"ipc://{path}")
        assert listening(f"tcp://127.0.0.1:{port}")
    finally:
        server.close()
        tcp.close()
    assert not listening(f"ipc://{path}")  # the file is left, nobody listens
    assert not listening(f"tcp://127.0.0.1:{port}")
