"""Test helpers for whole-system runs started as OS processes."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil

NUDAQ = [sys.executable, "-m", "daq.cli"]
"""The ``nudaq`` command of this environment."""


def start_up(data_dir: Path, *args: str, stdout=subprocess.PIPE, env=None) -> subprocess.Popen:
    """``nudaq up --sim ARGS --data-dir DIR`` as a process, its streams as text (stderr piped)."""
    return subprocess.Popen(
        [*NUDAQ, "up", "--sim", *args, "--data-dir", str(data_dir)],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def stop_up(process: subprocess.Popen) -> None:
    """Ctrl-C to nudaq up (it ends the run and its processes); kill what is left by pid."""
    children = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for child in children:
        if child.is_running():
            child.kill()


def kill_processes_of(path: Path) -> None:
    """Kill every process whose command line names ``path`` (what a failed test left)."""
    for p in psutil.process_iter(["cmdline"]):
        if str(path) in " ".join(p.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                p.kill()


@contextlib.contextmanager
def scratch_data_dir(prefix: str = "nq") -> Iterator[Path]:
    """A short data directory under /tmp (ipc socket paths must stay under ~100 characters);
    at the end every process still running on it is killed and it is removed."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        kill_processes_of(path)
        shutil.rmtree(path, ignore_errors=True)
