"""Test helpers for whole-system runs started as OS processes."""

from __future__ import annotations

import signal
import subprocess
import sys
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
