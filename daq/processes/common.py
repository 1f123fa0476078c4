"""What every nudaq OS process shares: command-line basics, logging, stop signals."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import NoReturn

from daq.core.config import Config, load_config
from daq.core.paths import data_dir as resolve_data_dir

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class LogFile(logging.FileHandler):
    """A process's log file that outlives a full disk: a record it cannot write is dropped,
    and the console says so once, until a write succeeds again (logging's own handling
    would print a traceback for every record)."""

    failing = False

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        if self.failing and not self._failed_now:
            self.failing = False
            print(f"{self.baseFilename}: writable again", file=sys.stderr)
        self._failed_now = False

    def handleError(self, record: logging.LogRecord) -> None:
        self._failed_now = True
        if not self.failing:
            self.failing = True
            err = sys.exc_info()[1]
            print(f"{self.baseFilename}: log records are lost: {err}", file=sys.stderr)

    _failed_now = False


def setup_logging(name: str, data_dir: Path) -> None:
    """Log at INFO to data_dir/logs/<name>.log and at WARNING to the console."""
    log_dir = Path(data_dir) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(logging.INFO)
    file_handler = LogFile(log_dir / f"{name}.log")
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter(f"{name}: %(levelname)s %(message)s"))
    root.addHandler(file_handler)
    root.addHandler(console)


class StopFlag:
    """Set by SIGTERM or SIGINT so a process's main loop ends cleanly."""

    def __init__(self) -> None:
        self._event = threading.Event()
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, *_: object) -> None:
        self._event.set()

    def set(self) -> None:
        """Request the stop from inside the process."""
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` once logs and standard streams are flushed, without the
    interpreter's teardown: with numba's kernels and SQLAlchemy loaded that takes ~0.7 s,
    which every replay would wait for (its builder and reader, and the command itself).
    Only for the end of a process's main, after it closed its sockets, files and database
    connections."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def base_parser(description: str) -> argparse.ArgumentParser:
    """Arguments every process takes: --config, --data-dir, --db."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", type=Path, help="TOML configuration or JSON snapshot")
    parser.add_argument("--data-dir", type=Path, default=None, help="data directory")
    parser.add_argument("--db", default=None, help="SQLAlchemy database URL")
    return parser


def common_setup(args: argparse.Namespace, name: str) -> tuple[Config, Path]:
    """Load the configuration, create the data directory, start logging."""
    config = load_config(args.config)
    data_dir = resolve_data_dir(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "sockets").mkdir(exist_ok=True)
    setup_logging(name, data_dir)
    return config, data_dir
