"""Test helpers for whole-system runs started as OS processes."""

from __future__ import annotations

import signal
import subprocess

import psutil


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
